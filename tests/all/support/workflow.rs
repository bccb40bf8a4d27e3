//! A small local GitHub Actions runner for tests: it reads a workflow file and runs its jobs the
//! way a hosted runner does, for the subset of the syntax this repository's workflows and action
//! use, and fails loudly on anything else.
//!
//! - `run:` steps run for real in `bash --noprofile --norc -eo pipefail`, with `env:` (workflow,
//!   job, step; `GITHUB_ENV` from earlier steps), `working-directory`, and per-step
//!   `GITHUB_OUTPUT`, `GITHUB_ENV`, `GITHUB_PATH` and `GITHUB_STEP_SUMMARY` files read back as the
//!   runner does; `GITHUB_EVENT_PATH` holds the event payload.
//! - `uses: ./action` (and `OWNER/health-predict/action@REF`, as another repository writes it)
//!   runs the composite action's steps for real, with its inputs, defaults and outputs.
//! - Every other `uses:` must have a declared stand-in ([`StandIn`]); an undeclared one panics.
//! - Expressions: `${{ }}` with the `github`, `env`, `inputs`, `steps`, `runner`, `vars` and
//!   `secrets` contexts, literals, `== != && || !`, parentheses, and the functions `always()`,
//!   `success()`, `failure()`, `cancelled()`, `contains()`, `startsWith()`.
//! - `permissions: id-token: write` offers the OIDC request variables (pointing at a test server);
//!   without it they are absent, as on GitHub.
//!
//! Not modelled: matrices, services, containers, `needs` ordering beyond file order, reusable
//! workflows, `continue-on-error`, timeouts, and masking (`::add-mask::` lines are recorded).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use serde_norway::Value as Yaml;

/// What a stand-in for a third-party action gets and may set.
pub struct StandInCall<'a> {
    pub with: &'a BTreeMap<String, String>,
    pub workspace: &'a Path,
    pub temp: &'a Path,
    pub home: &'a Path,
    /// The job's environment as the step would see it.
    pub env: &'a BTreeMap<String, String>,
    /// Variables for later steps (as if written to `GITHUB_ENV`).
    pub set_env: Vec<(String, String)>,
    /// Directories for later steps' PATH (as if written to `GITHUB_PATH`).
    pub add_path: Vec<PathBuf>,
    pub outputs: BTreeMap<String, String>,
}

/// A local stand-in for a third-party action: `Err` fails the step with that message.
pub type StandIn = Box<dyn Fn(&mut StandInCall<'_>) -> Result<(), String> + Send + Sync>;

/// One step's result.
#[derive(Debug, Clone)]
pub struct StepRun {
    pub id: String,
    pub name: String,
    /// `success`, `failure` or `skipped`.
    pub outcome: String,
    pub outputs: BTreeMap<String, String>,
}

/// One job's result.
#[derive(Debug, Clone, Default)]
pub struct JobRun {
    pub name: String,
    pub environment: Option<String>,
    pub succeeded: bool,
    pub steps: Vec<StepRun>,
    /// Every step's `GITHUB_STEP_SUMMARY`, in order.
    pub summary: String,
    /// stdout and stderr of every step, in order.
    pub log: String,
    /// `::error`/`::warning`/`::notice` lines.
    pub annotations: Vec<String>,
    pub masks: Vec<String>,
}

impl JobRun {
    pub fn step(&self, id: &str) -> &StepRun {
        self.steps
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no step {id} in {:?}", self.ids()))
    }

    pub fn ids(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| format!("{}={}", s.id, s.outcome))
            .collect()
    }
}

/// The runner: what GitHub would provide for one workflow run.
pub struct Runner {
    /// The repository's working tree (what `./action` resolves to after checkout).
    pub root: PathBuf,
    /// Scratch space: workspace, temp, home and the step files live under it.
    pub dir: PathBuf,
    pub repository: String,
    pub event_name: String,
    pub event: Value,
    /// `workflow_dispatch` inputs as the event carries them (booleans as JSON booleans).
    pub inputs: BTreeMap<String, Value>,
    pub vars: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
    /// The runner machine's environment for every step (PATH, HOME and tool endpoints).
    pub env: BTreeMap<String, String>,
    /// `(ACTIONS_ID_TOKEN_REQUEST_URL, ACTIONS_ID_TOKEN_REQUEST_TOKEN)` for id-token: write.
    pub oidc: Option<(String, String)>,
    pub run_id: u64,
    pub run_number: u64,
    pub sha: String,
    pub stand_ins: BTreeMap<String, StandIn>,
    /// `uses:` prefixes (before `@`) that resolve to a local composite action directory.
    pub local_actions: BTreeMap<String, PathBuf>,
}

impl Runner {
    pub fn new(root: &Path, dir: &Path) -> Runner {
        let mut env = BTreeMap::new();
        env.insert("PATH".to_owned(), std::env::var("PATH").unwrap_or_default());
        Runner {
            root: root.to_path_buf(),
            dir: dir.to_path_buf(),
            repository: "octo-org/health-predict".into(),
            event_name: "push".into(),
            event: json!({}),
            inputs: BTreeMap::new(),
            vars: BTreeMap::new(),
            secrets: BTreeMap::new(),
            env,
            oidc: None,
            run_id: 1000,
            run_number: 1,
            sha: "0123456789abcdef0123456789abcdef01234567".into(),
            stand_ins: BTreeMap::new(),
            local_actions: BTreeMap::new(),
        }
    }

    pub fn workspace(&self) -> PathBuf {
        self.dir.join("work")
    }

    pub fn temp(&self) -> PathBuf {
        self.dir.join(format!("temp-{}", self.run_id))
    }

    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// Runs every job of `workflow` (a path relative to the root) whose `if:` holds.
    pub fn run(&self, workflow: &str) -> Vec<JobRun> {
        let path = self.root.join(workflow);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{workflow}: {e}"));
        let doc: Yaml = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{workflow}: {e}"));
        let wf_name = doc.get("name").map(scalar).unwrap_or_default();
        let mut jobs = Vec::new();
        for (job_id, job) in doc["jobs"].as_mapping().expect("jobs") {
            let job_id = scalar(job_id);
            jobs.push(self.run_job(&doc, &wf_name, &job_id, job));
        }
        jobs
    }

    fn base_contexts(&self, wf_name: &str, job_id: &str) -> Value {
        let workspace = self.workspace();
        let temp = self.temp();
        json!({
            "github": {
                "repository": self.repository,
                "repository_owner": self.repository.split('/').next().unwrap_or_default(),
                "event_name": self.event_name,
                "event": self.event,
                "sha": self.sha,
                "ref": "refs/heads/main",
                "workspace": workspace.display().to_string(),
                "run_id": self.run_id.to_string(),
                "run_number": self.run_number.to_string(),
                "run_attempt": "1",
                "server_url": "https://github.com",
                "api_url": self.env.get("GITHUB_API_URL").cloned().unwrap_or_else(|| "https://api.github.com".into()),
                "token": self.secrets.get("GITHUB_TOKEN").cloned().unwrap_or_else(|| "ghs_job_token".into()),
                "workflow": wf_name,
                "job": job_id,
                "actor": "octocat",
            },
            "runner": {"os": "Linux", "arch": "X64", "temp": temp.display().to_string(),
                       "tool_cache": self.dir.join("toolcache").display().to_string()},
            "inputs": self.inputs,
            "vars": self.vars,
            "secrets": self.secrets,
            "env": {},
            "steps": {},
        })
    }

    fn run_job(&self, doc: &Yaml, wf_name: &str, job_id: &str, job: &Yaml) -> JobRun {
        let workspace = self.workspace();
        let temp = self.temp();
        let home = self.home();
        for d in [&workspace, &temp, &home] {
            std::fs::create_dir_all(d).unwrap();
        }
        let event_path = temp.join("event.json");
        std::fs::write(&event_path, serde_json::to_vec(&self.event).unwrap()).unwrap();

        let mut job_run = JobRun {
            name: job_id.to_owned(),
            ..JobRun::default()
        };
        let mut ctx = self.base_contexts(wf_name, job_id);
        // Workflow env, then job env, each evaluated in order.
        for env in [doc.get("env"), job.get("env")].into_iter().flatten() {
            for (k, v) in env.as_mapping().expect("env mapping") {
                let value = template(&ctx, &scalar(v), false);
                ctx["env"][scalar(k)] = json!(value);
            }
        }
        if let Some(cond) = job.get("if")
            && !eval_condition(&ctx, &scalar(cond), false)
        {
            job_run.succeeded = true;
            return job_run;
        }
        job_run.environment = job
            .get("environment")
            .map(|e| template(&ctx, &scalar(e), false));
        let permissions = job.get("permissions").or_else(|| doc.get("permissions"));
        let id_token = permissions
            .and_then(|p| p.get("id-token"))
            .is_some_and(|v| scalar(v) == "write");
        let shell_default = job
            .get("defaults")
            .or_else(|| doc.get("defaults"))
            .and_then(|d| d.get("run"))
            .and_then(|r| r.get("shell"))
            .map(scalar)
            .unwrap_or_else(|| "bash".into());
        assert_eq!(shell_default, "bash", "only bash is supported");

        let mut state = JobState {
            process_env: self.process_env(&workspace, &temp, &home, &event_path, wf_name, job_id),
            github_env: BTreeMap::new(),
            path: Vec::new(),
            failed: false,
            counter: 0,
        };
        if id_token && let Some((url, token)) = &self.oidc {
            {
                state
                    .process_env
                    .insert("ACTIONS_ID_TOKEN_REQUEST_URL".into(), url.clone());
                state
                    .process_env
                    .insert("ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(), token.clone());
            }
        }
        let steps = job["steps"].as_sequence().expect("steps").clone();
        self.run_steps(&steps, &mut ctx, &mut state, &mut job_run, None);
        job_run.succeeded = !state.failed;
        job_run
    }

    fn process_env(
        &self,
        workspace: &Path,
        temp: &Path,
        home: &Path,
        event_path: &Path,
        wf_name: &str,
        job_id: &str,
    ) -> BTreeMap<String, String> {
        let mut env = self.env.clone();
        let d = |p: &Path| p.display().to_string();
        for (k, v) in [
            ("CI", "true".to_owned()),
            ("GITHUB_ACTIONS", "true".into()),
            ("HOME", d(home)),
            ("GITHUB_WORKSPACE", d(workspace)),
            ("GITHUB_REPOSITORY", self.repository.clone()),
            (
                "GITHUB_REPOSITORY_OWNER",
                self.repository.split('/').next().unwrap_or_default().into(),
            ),
            ("GITHUB_EVENT_NAME", self.event_name.clone()),
            ("GITHUB_EVENT_PATH", d(event_path)),
            ("GITHUB_SHA", self.sha.clone()),
            ("GITHUB_REF", "refs/heads/main".into()),
            ("GITHUB_RUN_ID", self.run_id.to_string()),
            ("GITHUB_RUN_NUMBER", self.run_number.to_string()),
            ("GITHUB_RUN_ATTEMPT", "1".into()),
            ("GITHUB_SERVER_URL", "https://github.com".into()),
            ("GITHUB_WORKFLOW", wf_name.into()),
            ("GITHUB_JOB", job_id.into()),
            ("GITHUB_ACTOR", "octocat".into()),
            ("RUNNER_OS", "Linux".into()),
            ("RUNNER_ARCH", "X64".into()),
            ("RUNNER_TEMP", d(temp)),
            ("RUNNER_TOOL_CACHE", d(&self.dir.join("toolcache"))),
            ("ImageOS", "ubuntu24".into()),
        ] {
            env.entry(k.to_owned()).or_insert(v);
        }
        env.entry("GITHUB_API_URL".into())
            .or_insert_with(|| "https://api.github.com".into());
        env
    }

    /// Runs `steps` in `ctx`; `action_dir` is set inside a composite action.
    fn run_steps(
        &self,
        steps: &[Yaml],
        ctx: &mut Value,
        state: &mut JobState,
        job: &mut JobRun,
        action_dir: Option<&Path>,
    ) {
        for (n, step) in steps.iter().enumerate() {
            state.counter += 1;
            let id = step
                .get("id")
                .map(scalar)
                .unwrap_or_else(|| format!("__step{n}"));
            let name = step
                .get("name")
                .map(scalar)
                .or_else(|| step.get("uses").map(scalar))
                .unwrap_or_else(|| id.clone());
            let cond = step
                .get("if")
                .map(scalar)
                .unwrap_or_else(|| "success()".into());
            if !eval_condition(ctx, &cond, state.failed) {
                record(ctx, job, &id, &name, "skipped", BTreeMap::new(), action_dir);
                continue;
            }
            // The step's env: GITHUB_ENV, then the job's env context, then its own.
            let mut env_ctx = ctx["env"].clone();
            let mut step_env = BTreeMap::new();
            if let Some(e) = step.get("env").and_then(Yaml::as_mapping) {
                for (k, v) in e {
                    let value = template(ctx, &scalar(v), state.failed);
                    env_ctx[scalar(k)] = json!(value);
                    step_env.insert(scalar(k), value);
                }
            }
            let outcome;
            let outputs;
            if let Some(script) = step.get("run").map(scalar) {
                let shell = step
                    .get("shell")
                    .map(scalar)
                    .unwrap_or_else(|| "bash".into());
                assert_eq!(shell, "bash", "step {name}: only bash is supported");
                let wd = step
                    .get("working-directory")
                    .map(|w| template(ctx, &scalar(w), state.failed))
                    .unwrap_or_else(|| ".".into());
                let files = StepFiles::new(&self.temp(), state.counter);
                let mut cmd = Command::new("bash");
                cmd.arg("--noprofile")
                    .arg("--norc")
                    .arg("-eo")
                    .arg("pipefail")
                    .arg(files.script(&template(ctx, &script, state.failed)));
                cmd.env_clear();
                let mut env = state.process_env.clone();
                env.extend(state.github_env.clone());
                if let Some(obj) = ctx["env"].as_object() {
                    for (k, v) in obj {
                        env.insert(k.clone(), text(v));
                    }
                }
                env.extend(step_env.clone());
                env.insert("PATH".into(), state.path_var());
                if let Some(dir) = action_dir {
                    env.insert("GITHUB_ACTION_PATH".into(), dir.display().to_string());
                }
                files.apply(&mut env);
                cmd.envs(&env);
                cmd.current_dir(self.workspace().join(wd));
                let out = cmd.output().expect("bash runs");
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                scan_commands(job, &stdout);
                scan_commands(job, &stderr);
                job.log.push_str(&format!(
                    "--- {name} (exit {})\n{stdout}{stderr}",
                    out.status.code().unwrap_or(-1)
                ));
                eprintln!(
                    "[runner] {name}: exit {}\n{stdout}{stderr}",
                    out.status.code().unwrap_or(-1)
                );
                outputs = files.collect(state, job);
                outcome = if out.status.success() {
                    "success"
                } else {
                    "failure"
                };
            } else if let Some(uses) = step.get("uses").map(scalar) {
                let with: BTreeMap<String, String> = step
                    .get("with")
                    .and_then(Yaml::as_mapping)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (scalar(k), template(ctx, &scalar(v), state.failed)))
                            .collect()
                    })
                    .unwrap_or_default();
                let (ok, outs) = self.run_uses(&uses, &with, step_env, ctx, state, job, action_dir);
                outputs = outs;
                outcome = if ok { "success" } else { "failure" };
            } else {
                panic!("step {name} has neither run nor uses");
            }
            if outcome == "failure" {
                state.failed = true;
            }
            let _ = env_ctx;
            record(ctx, job, &id, &name, outcome, outputs, action_dir);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_uses(
        &self,
        uses: &str,
        with: &BTreeMap<String, String>,
        step_env: BTreeMap<String, String>,
        ctx: &Value,
        state: &mut JobState,
        job: &mut JobRun,
        caller_action: Option<&Path>,
    ) -> (bool, BTreeMap<String, String>) {
        let target = uses.split('@').next().unwrap_or(uses);
        let local = if let Some(rel) = uses.strip_prefix("./") {
            Some(self.workspace().join(rel))
        } else {
            self.local_actions.get(target).cloned()
        };
        if let Some(dir) = local {
            return self.run_composite(&dir, with, step_env, ctx, state, job);
        }
        let stand_in = self
            .stand_ins
            .get(target)
            .unwrap_or_else(|| panic!("no stand-in declared for `uses: {uses}`"));
        let mut env = state.process_env.clone();
        env.extend(state.github_env.clone());
        env.extend(step_env);
        let workspace = self.workspace();
        let temp = self.temp();
        let home = self.home();
        let mut call = StandInCall {
            with,
            workspace: &workspace,
            temp: &temp,
            home: &home,
            env: &env,
            set_env: Vec::new(),
            add_path: Vec::new(),
            outputs: BTreeMap::new(),
        };
        let result = stand_in(&mut call);
        job.log
            .push_str(&format!("--- {uses} (stand-in): {result:?}\n"));
        let _ = caller_action;
        state.github_env.extend(call.set_env);
        for p in call.add_path {
            state.path.insert(0, p.display().to_string());
        }
        (result.is_ok(), call.outputs)
    }

    fn run_composite(
        &self,
        dir: &Path,
        with: &BTreeMap<String, String>,
        step_env: BTreeMap<String, String>,
        caller: &Value,
        state: &mut JobState,
        job: &mut JobRun,
    ) -> (bool, BTreeMap<String, String>) {
        let text = std::fs::read_to_string(dir.join("action.yml"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let action: Yaml = serde_norway::from_str(&text).expect("action.yml parses");
        assert_eq!(scalar(&action["runs"]["using"]), "composite");
        let mut ctx = caller.clone();
        ctx["steps"] = json!({});
        let mut env = caller["env"].clone();
        for (k, v) in &step_env {
            env[k] = json!(v);
        }
        ctx["env"] = env;
        let mut inputs = serde_json::Map::new();
        let declared = action["inputs"].as_mapping().expect("inputs");
        for k in with.keys() {
            assert!(
                declared.contains_key(Yaml::String(k.clone())),
                "`with: {k}` is not an input of {}",
                dir.display()
            );
        }
        for (name, spec) in declared {
            let name = scalar(name);
            let value = match with.get(&name) {
                Some(v) => v.clone(),
                None => {
                    let default = spec.get("default").map(scalar).unwrap_or_default();
                    template(caller, &default, state.failed)
                }
            };
            if spec.get("required").is_some_and(|r| scalar(r) == "true") && value.is_empty() {
                panic!("input {name} of {} is required", dir.display());
            }
            inputs.insert(name, json!(value));
        }
        ctx["inputs"] = Value::Object(inputs);
        let failed_before = state.failed;
        state.failed = false;
        let steps = action["runs"]["steps"]
            .as_sequence()
            .expect("steps")
            .clone();
        self.run_steps(&steps, &mut ctx, state, job, Some(dir));
        let ok = !state.failed;
        state.failed = failed_before || !ok;
        let mut outputs = BTreeMap::new();
        if let Some(outs) = action.get("outputs").and_then(Yaml::as_mapping) {
            for (name, spec) in outs {
                outputs.insert(scalar(name), template(&ctx, &scalar(&spec["value"]), !ok));
            }
        }
        (ok, outputs)
    }
}

struct JobState {
    process_env: BTreeMap<String, String>,
    github_env: BTreeMap<String, String>,
    /// GITHUB_PATH entries, newest first.
    path: Vec<String>,
    failed: bool,
    counter: usize,
}

impl JobState {
    fn path_var(&self) -> String {
        let mut parts = self.path.clone();
        parts.push(self.process_env.get("PATH").cloned().unwrap_or_default());
        parts.join(":")
    }
}

/// The files a step writes its results to.
struct StepFiles {
    dir: PathBuf,
}

impl StepFiles {
    fn new(temp: &Path, n: usize) -> StepFiles {
        let dir = temp.join("_runner_file_commands").join(format!("step{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["output", "env", "path", "summary"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        StepFiles { dir }
    }

    fn script(&self, text: &str) -> PathBuf {
        let p = self.dir.join("script.sh");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn apply(&self, env: &mut BTreeMap<String, String>) {
        let d = |f: &str| self.dir.join(f).display().to_string();
        env.insert("GITHUB_OUTPUT".into(), d("output"));
        env.insert("GITHUB_ENV".into(), d("env"));
        env.insert("GITHUB_PATH".into(), d("path"));
        env.insert("GITHUB_STEP_SUMMARY".into(), d("summary"));
    }

    fn collect(&self, state: &mut JobState, job: &mut JobRun) -> BTreeMap<String, String> {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        for (k, v) in parse_file_command(&read("env")) {
            assert!(
                !k.starts_with("GITHUB_") && !k.starts_with("RUNNER_"),
                "GITHUB_ENV cannot override {k}"
            );
            state.github_env.insert(k, v);
        }
        for line in read("path").lines().filter(|l| !l.trim().is_empty()) {
            state.path.insert(0, line.trim().to_owned());
        }
        job.summary.push_str(&read("summary"));
        parse_file_command(&read("output")).into_iter().collect()
    }
}

/// `NAME=value` lines and `NAME<<DELIM` heredocs, as the runner reads GITHUB_OUTPUT/GITHUB_ENV.
pub fn parse_file_command(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            out.push((name.to_owned(), value.join("\n")));
        } else if let Some((name, value)) = line.split_once('=') {
            out.push((name.to_owned(), value.to_owned()));
        } else {
            panic!("malformed file command line: {line}");
        }
    }
    out
}

fn scan_commands(job: &mut JobRun, text: &str) {
    for line in text.lines() {
        if let Some(mask) = line.strip_prefix("::add-mask::") {
            job.masks.push(mask.to_owned());
        } else if line.starts_with("::error")
            || line.starts_with("::warning")
            || line.starts_with("::notice")
        {
            job.annotations.push(line.to_owned());
        }
    }
}

fn record(
    ctx: &mut Value,
    job: &mut JobRun,
    id: &str,
    name: &str,
    outcome: &str,
    outputs: BTreeMap<String, String>,
    action_dir: Option<&Path>,
) {
    ctx["steps"][id] = json!({"outcome": outcome, "conclusion": outcome, "outputs": outputs});
    let prefix = action_dir.map_or(String::new(), |_| "action:".to_owned());
    job.steps.push(StepRun {
        id: format!("{prefix}{id}"),
        name: name.to_owned(),
        outcome: outcome.to_owned(),
        outputs,
    });
}

pub fn scalar(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

// ------------------------------------------------------------------------------- expressions

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => true,
    }
}

/// Substitutes every `${{ expr }}` in `s`.
pub fn template(ctx: &Value, s: &str, failed: bool) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .unwrap_or_else(|| panic!("unclosed expression in {s}"))
            + start;
        out.push_str(&text(&eval(ctx, &rest[start + 3..end], failed)));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// An `if:` condition (with or without `${{ }}`); a status function is implied as `success()`.
pub fn eval_condition(ctx: &Value, cond: &str, failed: bool) -> bool {
    let c = cond.trim();
    let c = c
        .strip_prefix("${{")
        .and_then(|x| x.strip_suffix("}}"))
        .unwrap_or(c);
    let has_status = ["always(", "success(", "failure(", "cancelled("]
        .iter()
        .any(|f| c.contains(f));
    let v = truthy(&eval(ctx, c, failed));
    if has_status { v } else { v && !failed }
}

pub fn eval(ctx: &Value, expr: &str, failed: bool) -> Value {
    let mut p = Parser {
        t: tokens(expr),
        i: 0,
        ctx,
        failed,
    };
    let v = p.or();
    assert_eq!(p.i, p.t.len(), "trailing tokens in `{expr}`");
    v
}

fn tokens(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::from("'");
            i += 1;
            loop {
                assert!(i < chars.len(), "unclosed string in `{expr}`");
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        s.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                s.push(chars[i]);
                i += 1;
            }
            out.push(s);
        } else if "=!&|<>".contains(c) && i + 1 < chars.len() && "=&|".contains(chars[i + 1]) {
            out.push(chars[i..i + 2].iter().collect());
            i += 2;
        } else if "()!,".contains(c) {
            out.push(c.to_string());
            i += 1;
        } else {
            let mut j = i;
            while j < chars.len() && (chars[j].is_alphanumeric() || "-_.*".contains(chars[j])) {
                j += 1;
            }
            assert!(j > i, "cannot read expression `{expr}` at {i}");
            out.push(chars[i..j].iter().collect());
            i = j;
        }
    }
    out
}

struct Parser<'a> {
    t: Vec<String>,
    i: usize,
    ctx: &'a Value,
    failed: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.t.get(self.i).map(String::as_str)
    }

    fn next(&mut self) -> String {
        self.i += 1;
        self.t
            .get(self.i - 1)
            .cloned()
            .expect("expression ends early")
    }

    fn or(&mut self) -> Value {
        let mut v = self.and();
        while self.peek() == Some("||") {
            self.next();
            let r = self.and();
            v = if truthy(&v) { v } else { r };
        }
        v
    }

    fn and(&mut self) -> Value {
        let mut v = self.cmp();
        while self.peek() == Some("&&") {
            self.next();
            let r = self.cmp();
            v = if truthy(&v) { r } else { v };
        }
        v
    }

    fn cmp(&mut self) -> Value {
        let l = self.unary();
        match self.peek() {
            Some("==") => {
                self.next();
                let r = self.unary();
                json!(text(&l).eq_ignore_ascii_case(&text(&r)))
            }
            Some("!=") => {
                self.next();
                let r = self.unary();
                json!(!text(&l).eq_ignore_ascii_case(&text(&r)))
            }
            _ => l,
        }
    }

    fn unary(&mut self) -> Value {
        if self.peek() == Some("!") {
            self.next();
            return json!(!truthy(&self.unary()));
        }
        if self.peek() == Some("(") {
            self.next();
            let v = self.or();
            assert_eq!(self.next(), ")");
            return v;
        }
        let tok = self.next();
        if let Some(s) = tok.strip_prefix('\'') {
            return json!(s);
        }
        match tok.as_str() {
            "true" => return json!(true),
            "false" => return json!(false),
            "null" => return Value::Null,
            _ => {}
        }
        if let Ok(n) = tok.parse::<f64>() {
            return json!(n);
        }
        if self.peek() == Some("(") {
            self.next();
            let mut args = Vec::new();
            while self.peek() != Some(")") {
                args.push(self.or());
                if self.peek() == Some(",") {
                    self.next();
                }
            }
            self.next();
            return match (tok.as_str(), args.as_slice()) {
                ("always", []) => json!(true),
                ("success", []) => json!(!self.failed),
                ("failure", []) => json!(self.failed),
                ("cancelled", []) => json!(false),
                ("contains", [hay, needle]) => json!(match hay {
                    Value::Array(a) => a
                        .iter()
                        .any(|x| text(x).eq_ignore_ascii_case(&text(needle))),
                    other => text(other)
                        .to_lowercase()
                        .contains(&text(needle).to_lowercase()),
                }),
                ("startsWith", [s, p]) => {
                    json!(text(s).to_lowercase().starts_with(&text(p).to_lowercase()))
                }
                (f, _) => panic!("unsupported function {f}()"),
            };
        }
        self.lookup(&tok)
    }

    fn lookup(&self, path: &str) -> Value {
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        assert!(
            [
                "github", "env", "inputs", "steps", "runner", "vars", "secrets"
            ]
            .contains(&root),
            "unsupported context `{root}` in `{path}`"
        );
        let mut cur = vec![self.ctx[root].clone()];
        for part in parts {
            cur = if part == "*" {
                cur.iter()
                    .flat_map(|v| match v {
                        Value::Array(a) => a.clone(),
                        Value::Object(o) => o.values().cloned().collect(),
                        _ => Vec::new(),
                    })
                    .collect()
            } else {
                cur.iter().map(|v| v[part].clone()).collect()
            };
        }
        if path.contains('*') {
            Value::Array(cur)
        } else {
            cur.pop().unwrap_or(Value::Null)
        }
    }
}

/// Copies the repository's working tree (tracked and untracked, not ignored) into `dest`: what
/// `actions/checkout` puts in the workspace.
pub fn checkout(root: &Path, dest: &Path) -> Result<(), String> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    for rel in out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).map_err(|e| e.to_string())?);
        let from = root.join(rel);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = dest.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::copy(&from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
    }
    Ok(())
}
