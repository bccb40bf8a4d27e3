//! `doctor`: environment and connectivity diagnosis.

use std::time::Duration;

use serde::Serialize;

use crate::apitest::{Diagnosis, ProxyMode, Verdict};
use crate::cli::serve::parse_duration;
use crate::cli::{Context, env};
use crate::exit::Exit;

#[derive(Debug, clap::Subcommand)]
pub enum DoctorCommand {
    /// Say why a URL can or cannot be reached from here: DNS, route, refused vs timeout, proxies.
    Net(NetArgs),
}

#[derive(Debug, clap::Args)]
pub struct NetArgs {
    /// The URL to diagnose (e.g. http://192.168.49.2:30080).
    pub url: String,
    /// How long each step (DNS, connect, HTTP) may take.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Diagnose as a client that honours HTTP_PROXY/HTTPS_PROXY/ALL_PROXY would connect.
    #[arg(long, env = env::USE_ENV_PROXY)]
    pub use_env_proxy: bool,
}

#[derive(Debug, Serialize)]
struct NetReport(Diagnosis);

impl crate::output::Render for NetReport {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        write!(out, "{}", self.0.render())
    }
}

pub async fn run(command: DoctorCommand, ctx: &Context) -> anyhow::Result<Exit> {
    match command {
        DoctorCommand::Net(a) => {
            let proxy = if a.use_env_proxy {
                ProxyMode::FromEnv
            } else {
                ProxyMode::Direct
            };
            let d = crate::apitest::diagnose(&a.url, proxy, a.timeout).await;
            let exit = match d.verdict {
                Verdict::Reachable => Exit::Success,
                Verdict::InvalidUrl => Exit::Usage,
                _ => Exit::Infra,
            };
            crate::output::emit(ctx.output, &NetReport(d))?;
            Ok(exit)
        }
    }
}
