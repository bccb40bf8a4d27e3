//! `ecr login` and `ecr refresh-secret`: arguments into requests, and the one place
//! the AWS side (ECR token) is composed with the Kubernetes side (pull secret), since leaf modules
//! never import each other.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::aws::credentials::{self, CredentialMode, CredentialRequest};
use crate::aws::ecr::{Ecr, EcrAuth, write_docker_config};
use crate::aws::{AwsSettings, Resolved, sdk_config};
use crate::cli::{Context, env};
use crate::exit::Exit;
use crate::kube::pull_secret::{NamespaceOutcome, PullSecretRequest, apply_pull_secret};
use crate::output::{Render, emit};

/// Where AWS is and which credentials to use: shared by every command here.
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// AWS region (falls back to AWS_DEFAULT_REGION).
    #[arg(long, env = env::AWS_REGION)]
    pub region: Option<String>,
    /// Endpoint override for STS and ECR (e.g. a moto server in tests).
    #[arg(long, env = env::AWS_ENDPOINT_URL)]
    pub endpoint_url: Option<String>,
    /// Credential source: `auto` uses GitHub OIDC when --role-arn is set in GitHub Actions,
    /// otherwise the SDK default chain (env keys, web-identity token file).
    #[arg(long, value_enum, default_value_t = CredentialMode::Auto, env = env::AWS_CREDENTIALS)]
    pub credentials: CredentialMode,
    /// IAM role to assume with the GitHub OIDC token (AssumeRoleWithWebIdentity).
    #[arg(long, env = env::AWS_ROLE_ARN)]
    pub role_arn: Option<String>,
    /// Audience of the GitHub OIDC token; must match the IAM OIDC provider's client ID.
    #[arg(long, default_value = credentials::DEFAULT_AUDIENCE, env = env::OIDC_AUDIENCE)]
    pub audience: String,
    /// STS session name [default: gh-<GITHUB_RUN_ID>-<GITHUB_RUN_ATTEMPT>].
    #[arg(long, env = env::AWS_SESSION_NAME)]
    pub session_name: Option<String>,
    /// STS session lifetime (900s to the role's MaxSessionDuration), e.g. `1h`.
    #[arg(long, default_value = "1h", value_parser = parse_duration, env = env::AWS_SESSION_DURATION)]
    pub duration: Duration,
    /// Time limit of one AWS HTTP attempt (retries come on top, bounded).
    #[arg(long = "aws-timeout", default_value = "20s", value_parser = parse_duration, env = env::AWS_TIMEOUT)]
    pub timeout: Duration,
}

impl AwsArgs {
    fn settings(&self) -> anyhow::Result<AwsSettings> {
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var(env::AWS_DEFAULT_REGION).ok())
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                crate::exit::fail(
                    Exit::Usage,
                    "no AWS region",
                    Some("pass --region or set AWS_REGION"),
                )
            })?;
        Ok(AwsSettings {
            region,
            endpoint_url: self.endpoint_url.clone().filter(|u| !u.is_empty()),
            attempt_timeout: self.timeout,
        })
    }

    fn request(&self) -> CredentialRequest {
        CredentialRequest {
            mode: self.credentials,
            role_arn: self.role_arn.clone().filter(|r| !r.is_empty()),
            audience: self.audience.clone(),
            session_name: self.session_name.clone(),
            duration: self.duration,
        }
    }

    /// Credentials, then an ECR client signed with them.
    pub(crate) async fn ecr(&self) -> anyhow::Result<(Ecr, Resolved)> {
        let settings = self.settings()?;
        let source = self.request().source(|k| std::env::var(k).ok())?;
        let resolved = credentials::resolve(&source, &settings).await?;
        tracing::info!(
            source = resolved.source,
            role = resolved.role_arn.as_deref().unwrap_or("-"),
            "AWS credentials ready"
        );
        let config = sdk_config(&settings, &resolved).await;
        Ok((Ecr::new(&config), resolved))
    }
}

/// Durations as `90`, `90s`, `15m`, `1h30m` or ISO 8601 (`PT1H`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("not a duration like 90s, 15m or 1h: {e}"))?;
    Duration::try_from(d).map_err(|_| "a duration must not be negative".to_owned())
}

#[derive(Debug, clap::Subcommand)]
pub enum EcrCommand {
    /// Log the runner's docker in to ECR: writes a docker config.json (0600, atomic, merged).
    Login(LoginArgs),
    /// Apply the ECR pull secret in namespaces (server-side apply, no gap) and merge it into a
    /// ServiceAccount; `--watch` keeps it fresh before the 12-hour token expires.
    RefreshSecret(RefreshArgs),
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Docker config directory (config.json inside) [default: ~/.docker].
    #[arg(long, env = env::DOCKER_CONFIG)]
    pub docker_config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Namespaces to apply the Secret in (repeat or comma-separate).
    #[arg(long = "namespace", short = 'n', required = true, value_delimiter = ',', env = env::PULL_SECRET_NAMESPACES)]
    pub namespaces: Vec<String>,
    /// Name of the `kubernetes.io/dockerconfigjson` Secret.
    #[arg(long, default_value = "ecr-pull", env = env::PULL_SECRET_NAME)]
    pub secret_name: String,
    /// ServiceAccount (in each namespace) whose imagePullSecrets gets the Secret (others kept).
    #[arg(long, env = env::PULL_SECRET_SERVICE_ACCOUNT)]
    pub service_account: Option<String>,
    /// Keep running and refresh before the token expires (SIGTERM/Ctrl-C stops it).
    #[arg(long)]
    pub watch: bool,
    /// With --watch: refresh this long before the expiry.
    #[arg(long, default_value = "1h", value_parser = parse_duration, env = env::REFRESH_BEFORE)]
    pub refresh_before: Duration,
    /// With --watch: never refresh sooner than this after the last attempt (also the wait
    /// after a failed refresh).
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = env::REFRESH_MIN_INTERVAL)]
    pub min_interval: Duration,
    /// With --watch: stop after this many refreshes (0: until stopped).
    #[arg(long, default_value_t = 0, env = env::REFRESH_MAX_CYCLES)]
    pub max_cycles: u32,
}

pub async fn ecr(cmd: EcrCommand, ctx: &Context) -> anyhow::Result<Exit> {
    match cmd {
        EcrCommand::Login(a) => login(a, ctx).await,
        EcrCommand::RefreshSecret(a) => refresh_secret(a, ctx).await,
    }
}

#[derive(Debug, Serialize)]
struct LoginReport {
    registry: String,
    username: String,
    expires_at: jiff::Timestamp,
    docker_config: String,
    credentials: &'static str,
}

impl Render for LoginReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "logged in to {} as {} (token expires {}); wrote {}",
            self.registry, self.username, self.expires_at, self.docker_config
        )
    }
}

async fn login(args: LoginArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let dir = match args.docker_config {
        Some(d) => d,
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".docker"))
            .ok_or_else(|| {
                crate::exit::fail(
                    Exit::Usage,
                    "no docker config directory",
                    Some("pass --docker-config or set DOCKER_CONFIG"),
                )
            })?,
    };
    let (ecr, resolved) = args.aws.ecr().await?;
    let auth = ecr.authorization().await?;
    let path = dir.join("config.json");
    write_docker_config(&path, &auth)?;
    let _ = crate::ci::set_output("registry", &auth.registry);
    emit(
        ctx.output,
        &LoginReport {
            registry: auth.registry.clone(),
            username: auth.username.clone(),
            expires_at: auth.expires_at,
            docker_config: path.display().to_string(),
            credentials: resolved.source,
        },
    )?;
    Ok(Exit::Success)
}

#[derive(Debug, Serialize)]
struct Cycle {
    registry: String,
    secret: String,
    expires_at: jiff::Timestamp,
    /// True when any namespace's Secret or ServiceAccount was written.
    changed: bool,
    namespaces: Vec<NamespaceOutcome>,
    credentials: &'static str,
}

#[derive(Debug, Serialize)]
struct RefreshReport {
    /// Every refresh that ran (one without --watch).
    cycles: Vec<Cycle>,
    /// Failed refreshes in --watch mode (each retried after --min-interval).
    failures: Vec<String>,
    next_refresh: Option<jiff::Timestamp>,
}

impl Render for RefreshReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for c in &self.cycles {
            write_cycle(out, c)?;
        }
        for f in &self.failures {
            writeln!(out, "refresh failed: {f}")?;
        }
        Ok(())
    }
}

fn write_cycle(out: &mut dyn Write, c: &Cycle) -> std::io::Result<()> {
    let state = if c.changed { "updated" } else { "unchanged" };
    writeln!(
        out,
        "pull secret {} for {} {state} in {} namespace(s); token expires {}",
        c.secret,
        c.registry,
        c.namespaces.len(),
        c.expires_at
    )?;
    for n in &c.namespaces {
        let sa = match n.service_account {
            Some(change) => format!(", service account: {change:?}"),
            None => String::new(),
        };
        writeln!(
            out,
            "  {}: secret {}{sa}",
            n.namespace,
            if n.secret_changed {
                "written"
            } else {
                "unchanged"
            }
        )?;
    }
    Ok(())
}

async fn refresh_once(args: &RefreshArgs, kube: &::kube::Client) -> anyhow::Result<Cycle> {
    let (ecr, resolved) = args.aws.ecr().await?;
    let auth: EcrAuth = ecr.authorization().await?;
    let request = PullSecretRequest {
        name: args.secret_name.clone(),
        registry: auth.registry.clone(),
        username: auth.username.clone(),
        password: auth.password.clone(),
        expires_at: Some(auth.expires_at),
        namespaces: args.namespaces.clone(),
        service_account: args.service_account.clone(),
    };
    let namespaces = apply_pull_secret(kube, &request).await?;
    let changed = namespaces.iter().any(|n| {
        n.secret_changed
            || n.service_account
                .is_some_and(|c| c != crate::kube::pull_secret::AccountChange::AlreadyPresent)
    });
    Ok(Cycle {
        registry: auth.registry,
        secret: args.secret_name.clone(),
        expires_at: auth.expires_at,
        changed,
        namespaces,
        credentials: resolved.source,
    })
}

/// When to refresh next: `refresh_before` ahead of the expiry, but not sooner than
/// `min_interval` from now (a token that already looks expired, e.g. from a skewed clock or a test
/// double, is retried at that pace rather than in a tight loop).
pub fn next_refresh(
    now: jiff::Timestamp,
    expires_at: jiff::Timestamp,
    refresh_before: Duration,
    min_interval: Duration,
) -> Duration {
    let until_expiry = expires_at.duration_since(now);
    let lead = jiff::SignedDuration::try_from(refresh_before).unwrap_or(jiff::SignedDuration::ZERO);
    let wait = Duration::try_from(until_expiry - lead).unwrap_or(Duration::ZERO);
    wait.max(min_interval)
}

async fn refresh_secret(args: RefreshArgs, ctx: &Context) -> anyhow::Result<Exit> {
    for ns in &args.namespaces {
        if ns.is_empty() {
            return Err(crate::exit::fail(
                Exit::Usage,
                "an empty --namespace",
                Some("list namespaces like --namespace a,b"),
            ));
        }
    }
    let kube = crate::kube::client().await?;
    if !args.watch {
        let cycle = refresh_once(&args, &kube).await?;
        let _ = crate::ci::set_output("pull-secret-expires-at", &cycle.expires_at.to_string());
        emit(
            ctx.output,
            &RefreshReport {
                cycles: vec![cycle],
                failures: Vec::new(),
                next_refresh: None,
            },
        )?;
        return Ok(Exit::Success);
    }

    let mut report = RefreshReport {
        cycles: Vec::new(),
        failures: Vec::new(),
        next_refresh: None,
    };
    let mut last_ok;
    let mut stop = Shutdown::install();
    let mut runs = 0u32;
    loop {
        runs += 1;
        let wait = match refresh_once(&args, &kube).await {
            Ok(cycle) => {
                last_ok = true;
                let wait = next_refresh(
                    jiff::Timestamp::now(),
                    cycle.expires_at,
                    args.refresh_before,
                    args.min_interval,
                );
                if ctx.output == crate::output::Format::Human {
                    let mut out = std::io::stdout().lock();
                    write_cycle(&mut out, &cycle)?;
                    out.flush()?;
                }
                tracing::info!(
                    expires_at = %cycle.expires_at,
                    next_in_s = wait.as_secs(),
                    "pull secret refreshed"
                );
                report.cycles.push(cycle);
                wait
            }
            Err(e) => {
                last_ok = false;
                let text = super::errors::render(&e);
                tracing::error!(
                    "refresh failed; retrying in {:?}\n{text}",
                    args.min_interval
                );
                report
                    .failures
                    .push(text.lines().next().unwrap_or("").to_owned());
                args.min_interval
            }
        };
        if args.max_cycles > 0 && runs >= args.max_cycles {
            break;
        }
        report.next_refresh = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or_default())
            .ok();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait() => {
                tracing::info!("stopping the refresh loop");
                break;
            }
        }
    }
    report.next_refresh = None;
    if ctx.output == crate::output::Format::Json {
        emit(ctx.output, &report)?;
    }
    Ok(if last_ok { Exit::Success } else { Exit::Infra })
}

/// Ctrl-C and SIGTERM (what a runner or the kubelet sends), registered when created so a signal
/// that arrives during a refresh is not fatal: it ends the loop after that refresh.
struct Shutdown {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Shutdown {
    fn install() -> Shutdown {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals = signal(SignalKind::terminate())
                .and_then(|t| signal(SignalKind::interrupt()).map(|i| (t, i)))
                .ok();
            Shutdown { signals }
        }
        #[cfg(not(unix))]
        Shutdown {}
    }

    async fn wait(&mut self) {
        #[cfg(unix)]
        if let Some((term, int)) = self.signals.as_mut() {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn next_refresh_leads_the_expiry_and_respects_the_floor() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let in_12h = now
            .checked_add(jiff::SignedDuration::from_hours(12))
            .unwrap();
        let wait = next_refresh(
            now,
            in_12h,
            Duration::from_secs(3600),
            Duration::from_secs(60),
        );
        assert_eq!(wait, Duration::from_secs(11 * 3600));
        let past = jiff::Timestamp::from_second(1_000).unwrap();
        let wait = next_refresh(
            now,
            past,
            Duration::from_secs(3600),
            Duration::from_secs(60),
        );
        assert_eq!(wait, Duration::from_secs(60));
    }
}
