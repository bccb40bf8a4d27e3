//! Integration tests: `report publish` against a wiremock GitHub API that answers with fixtures
//! carrying every field octocrab's models require; the composite action's scripts driven
//! locally; actionlint on every workflow.

// Helpers outside #[test] functions are test code too (clippy.toml allows unwrap in tests).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support;

pub(crate) const REPO: &str = "octo-org/health-predict";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const HEAD_SHA: &str = "fedcba9876543210fedcba9876543210fedcba98";

// ---------------------------------------------------------------- fixtures

fn user() -> Value {
    let api = "https://api.github.com/users/github-actions%5Bbot%5D";
    json!({
        "login": "github-actions[bot]", "id": 41898282, "node_id": "MDM6Qm90NDE4OTgyODI=",
        "avatar_url": "https://avatars.githubusercontent.com/in/15368?v=4", "gravatar_id": "",
        "url": api, "html_url": "https://github.com/apps/github-actions",
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"), "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": "Bot", "user_view_type": "public", "site_admin": false
    })
}

pub(crate) fn comment(id: u64, pr: u64, body: &str) -> Value {
    json!({
        "id": id, "node_id": format!("IC_kwDO{id}"),
        "url": format!("https://api.github.com/repos/{REPO}/issues/comments/{id}"),
        "html_url": format!("https://github.com/{REPO}/pull/{pr}#issuecomment-{id}"),
        "issue_url": format!("https://api.github.com/repos/{REPO}/issues/{pr}"),
        "body": body, "user": user(), "author_association": "NONE",
        "created_at": "2026-11-23T10:00:00Z", "updated_at": "2026-11-23T10:00:00Z",
        "reactions": {"url": format!("https://api.github.com/repos/{REPO}/issues/comments/{id}/reactions"),
            "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0, "confused": 0,
            "heart": 0, "rocket": 0, "eyes": 0},
        "performed_via_github_app": null
    })
}

fn check_run(id: u64, head_sha: &str, status: &str, conclusion: Option<&str>, count: u64) -> Value {
    json!({
        "id": id, "node_id": format!("CR_kwDO{id}"), "head_sha": head_sha,
        "external_id": "", "url": format!("https://api.github.com/repos/{REPO}/check-runs/{id}"),
        "html_url": format!("https://github.com/{REPO}/runs/{id}"),
        "details_url": "https://github.com/octo-org/health-predict/actions/runs/1",
        "status": status, "conclusion": conclusion,
        "started_at": "2026-11-23T10:00:00Z",
        "completed_at": if conclusion.is_some() { json!("2026-11-23T10:01:00Z") } else { Value::Null },
        "output": {
            "title": "health-predict", "summary": "s", "text": null,
            "annotations_count": count,
            "annotations_url": format!("https://api.github.com/repos/{REPO}/check-runs/{id}/annotations")
        },
        "name": "health-predict",
        "check_suite": {"id": 5},
        "app": null,
        "pull_requests": []
    })
}

/// Answers check-run creation and updates with a realistic check run, counting annotations.
pub(crate) fn check_run_responder(
    id: u64,
) -> impl Fn(&Request) -> ResponseTemplate + Send + Sync + 'static {
    move |req: &Request| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let n = body["output"]["annotations"]
            .as_array()
            .map_or(0, |a| a.len() as u64);
        let status = body["status"].as_str().unwrap_or("in_progress").to_owned();
        let conclusion = body["conclusion"].as_str().map(str::to_owned);
        let sha = body["head_sha"].as_str().unwrap_or(SHA).to_owned();
        let code = if req.method.as_str() == "POST" {
            201
        } else {
            200
        };
        ResponseTemplate::new(code).set_body_json(check_run(
            id,
            &sha,
            &status,
            conclusion.as_deref(),
            n,
        ))
    }
}

fn junit_with_failures(dir: &Path, failures: usize, passes: usize) -> PathBuf {
    let mut xml = String::from("<?xml version=\"1.0\"?>\n<testsuites><testsuite name=\"api\">\n");
    for i in 0..failures {
        xml.push_str(&format!(
            "<testcase classname=\"predict\" name=\"case_{i}\" file=\"tests/contract.rs\" line=\"{}\"><failure message=\"expected 200, got 500\">body: {{}}</failure></testcase>\n",
            10 + i
        ));
    }
    for i in 0..passes {
        xml.push_str(&format!(
            "<testcase classname=\"health\" name=\"ok_{i}\"/>\n"
        ));
    }
    xml.push_str("</testsuite></testsuites>\n");
    let p = dir.join("junit.xml");
    std::fs::write(&p, xml).unwrap();
    p
}

/// A run directory from the real pipeline (batch 3 of the shared simulation: drift, a gate
/// against production, API tests), copied so a test may add files to it.
fn run_dir(dir: &Path) -> PathBuf {
    support::runs::copy_run("batch_3", dir)
}

fn pr_event(dir: &Path, number: u64, fork: bool) -> PathBuf {
    let head_repo = if fork { "someone/health-predict" } else { REPO };
    let p = dir.join("event.json");
    std::fs::write(
        &p,
        json!({
            "action": "synchronize", "number": number,
            "pull_request": {
                "number": number,
                "head": {"sha": HEAD_SHA, "repo": {"full_name": head_repo, "fork": fork}},
                "base": {"sha": SHA, "repo": {"full_name": REPO, "fork": false}}
            }
        })
        .to_string(),
    )
    .unwrap();
    p
}

/// The binary with a clean GitHub environment pointing at the mock (nothing inherited from a
/// real runner: its GITHUB_OUTPUT and job summary must never receive test output).
fn publish_cmd(api: &str, dir: &Path, event: Option<&Path>) -> tokio::process::Command {
    let mut cmd = support::bin();
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("GITHUB_") || k.starts_with("HEALTH_PREDICT_") || k.starts_with("RUNNER_")
        {
            cmd.env_remove(&k);
        }
    }
    cmd.env("GITHUB_TOKEN", "ghs_testtoken0123456789")
        .env("GITHUB_REPOSITORY", REPO)
        .env("GITHUB_SHA", SHA)
        .env("GITHUB_API_URL", api)
        .env("GITHUB_RUN_ID", "1")
        .env("GITHUB_OUTPUT", dir.join("output.txt"))
        .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"))
        .env("HEALTH_PREDICT_LOG", "warn");
    if let Some(e) = event {
        cmd.env("GITHUB_EVENT_PATH", e)
            .env("GITHUB_EVENT_NAME", "pull_request");
    } else {
        cmd.env("GITHUB_EVENT_NAME", "push");
    }
    cmd.arg("report").arg("publish");
    tokio::process::Command::from(cmd)
}

async fn run(mut cmd: tokio::process::Command) -> (i32, String, String) {
    let out = cmd.output().await.expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses a GITHUB_OUTPUT file written with heredoc delimiters.
fn outputs(file: &Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut map = std::collections::BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            assert!(delim.len() >= 16, "delimiter too guessable: {delim}");
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            map.insert(name.to_owned(), value.join("\n"));
        } else if let Some((k, v)) = line.split_once('=') {
            map.insert(k.to_owned(), v.to_owned());
        }
    }
    map
}

fn requests_to<'a>(reqs: &'a [Request], m: &str, suffix: &str) -> Vec<&'a Request> {
    reqs.iter()
        .filter(|r| r.method.as_str() == m && r.url.path().ends_with(suffix))
        .collect()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn check_run_with_120_annotations_arrives_in_3_requests() {
    let server = MockServer::start().await;
    let checks = format!("/repos/{REPO}/check-runs");
    Mock::given(method("POST"))
        .and(path(checks.clone()))
        .respond_with(check_run_responder(42))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{checks}/42")))
        .respond_with(check_run_responder(42))
        .expect(2)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let junit = junit_with_failures(dir.path(), 120, 3);

    let mut cmd = publish_cmd(&server.uri(), dir.path(), None);
    cmd.args(["--output", "json", "--junit"]).arg(&junit);
    let (code, stdout, stderr) = run(cmd).await;
    assert_eq!(
        code, 4,
        "tests failed, so the publish exits 4 after publishing\n{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect(&stdout);
    assert_eq!(report["check_run_requests"], 3);
    assert_eq!(report["annotations_sent"], 120);
    assert_eq!(report["annotations_truncated"], 0);
    assert_eq!(report["conclusion"], "failure");

    let reqs = server.received_requests().await.unwrap();
    let bodies: Vec<Value> = reqs
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let sizes: Vec<usize> = bodies
        .iter()
        .map(|b| b["output"]["annotations"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![50, 50, 20]);
    assert_eq!(bodies[0]["head_sha"], SHA);
    assert_eq!(bodies[0]["status"], "in_progress");
    assert_eq!(bodies[2]["status"], "completed");
    assert_eq!(bodies[2]["conclusion"], "failure");
    let a = &bodies[0]["output"]["annotations"][0];
    assert_eq!(a["path"], "tests/contract.rs");
    assert_eq!(a["start_line"], 10);
    assert_eq!(a["annotation_level"], "failure");
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .contains("expected 200, got 500")
    );
    assert_eq!(
        reqs[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
        "Bearer ghs_testtoken0123456789"
    );
    let out = outputs(&dir.path().join("output.txt"));
    assert_eq!(out["tests-failed"], "120");
    assert_eq!(
        out["check-run-url"],
        format!("https://github.com/{REPO}/runs/42")
    );
}

#[tokio::test]
async fn annotations_beyond_the_cap_are_counted_not_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/check-runs")))
        .respond_with(check_run_responder(7))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("/repos/{REPO}/check-runs/7")))
        .respond_with(check_run_responder(7))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let junit = junit_with_failures(dir.path(), 130, 0);
    let mut cmd = publish_cmd(&server.uri(), dir.path(), None);
    cmd.args(["--output", "json", "--max-annotations", "100", "--junit"])
        .arg(&junit);
    let (_, stdout, _) = run(cmd).await;
    let report: Value = serde_json::from_str(&stdout).expect(&stdout);
    assert_eq!(report["annotations_sent"], 100);
    assert_eq!(report["annotations_truncated"], 30);
    let reqs = server.received_requests().await.unwrap();
    let first: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert!(
        first["output"]["summary"]
            .as_str()
            .unwrap()
            .contains("30 more failed tests are not annotated (limit 100)"),
        "{first}"
    );
}

#[tokio::test]
async fn pr_comment_is_created_once_and_updated_on_the_second_run() {
    let server = MockServer::start().await;
    let pr = 17;
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/check-runs")))
        .respond_with(check_run_responder(9))
        .mount(&server)
        .await;
    let list = format!("/repos/{REPO}/issues/{pr}/comments");
    let ours = "<!-- health-predict:report check=\"health-predict\" -->\nold";
    // First run: only somebody else's comment. Second run: ours is there too.
    Mock::given(method("GET"))
        .and(path(list.clone()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([comment(1, pr, "LGTM")])))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(list.clone()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([comment(1, pr, "LGTM"), comment(555, pr, ours)])),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(list.clone()))
        .respond_with(ResponseTemplate::new(201).set_body_json(comment(555, pr, ours)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("/repos/{REPO}/issues/comments/555")))
        .respond_with(ResponseTemplate::new(200).set_body_json(comment(555, pr, ours)))
        .expect(1)
        .mount(&server)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let rd = run_dir(dir.path());
    junit_with_failures(&rd, 0, 5);
    let event = pr_event(dir.path(), pr, false);
    for expected in ["created", "updated"] {
        let mut cmd = publish_cmd(&server.uri(), dir.path(), Some(&event));
        cmd.args(["--output", "json", "--run-dir"]).arg(&rd);
        let (code, stdout, stderr) = run(cmd).await;
        assert_eq!(code, 0, "{stderr}");
        let report: Value = serde_json::from_str(&stdout).expect(&stdout);
        assert_eq!(report["comment"]["status"], "done", "{report}");
        assert!(
            report["comment"]["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{expected} comment 555")),
            "{report}"
        );
        assert_eq!(report["conclusion"], "success");
    }
    let reqs = server.received_requests().await.unwrap();
    let created = requests_to(&reqs, "POST", &format!("/issues/{pr}/comments"));
    let body: Value = serde_json::from_slice(&created[0].body).unwrap();
    let text = body["body"].as_str().unwrap();
    assert!(text.starts_with("<!-- health-predict:report check=\"health-predict\" -->\n"));
    assert!(
        text.contains("health-predict: passed · decision DEPLOY · model 3"),
        "{text}"
    );
    assert!(text.contains("| ROC AUC |"), "{text}");
    assert!(text.contains("```mermaid\nxychart-beta"), "{text}");
    // The check run goes on the PR's head commit, not the merge commit.
    let check = requests_to(&reqs, "POST", "/check-runs");
    let cbody: Value = serde_json::from_slice(&check[0].body).unwrap();
    assert_eq!(cbody["head_sha"], HEAD_SHA);
}

#[tokio::test]
async fn a_comment_creation_that_failed_in_flight_is_not_posted_twice() {
    let server = MockServer::start().await;
    let pr = 21;
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/check-runs")))
        .respond_with(check_run_responder(11))
        .mount(&server)
        .await;
    let list = format!("/repos/{REPO}/issues/{pr}/comments");
    let ours = "<!-- health-predict:report check=\"health-predict\" -->\nfirst";
    Mock::given(method("GET"))
        .and(path(list.clone()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    // The POST timed out at the proxy, but GitHub had created the comment.
    Mock::given(method("GET"))
        .and(path(list.clone()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([comment(77, pr, ours)])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(list.clone()))
        .respond_with(ResponseTemplate::new(502).set_body_string("Bad Gateway"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("/repos/{REPO}/issues/comments/77")))
        .respond_with(ResponseTemplate::new(200).set_body_json(comment(77, pr, ours)))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let junit = junit_with_failures(dir.path(), 0, 1);
    let event = pr_event(dir.path(), pr, false);
    let mut cmd = publish_cmd(&server.uri(), dir.path(), Some(&event));
    cmd.args(["--output", "json", "--junit"]).arg(&junit);
    let (code, stdout, stderr) = run(cmd).await;
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect(&stdout);
    assert_eq!(report["comment"]["status"], "done", "{report}");
    assert_eq!(
        report["comment_url"],
        format!("https://github.com/{REPO}/pull/{pr}#issuecomment-77")
    );
}

#[tokio::test]
async fn fork_pull_request_with_read_only_token_degrades_to_summary_and_annotations() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/check-runs")))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run",
            "status": "403"
        })))
        .expect(1)
        .mount(&server)
        .await;
    // Nothing else may be attempted with a token known to be read-only.
    Mock::given(wiremock::matchers::path_regex("/issues/"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let rd = run_dir(dir.path());
    junit_with_failures(&rd, 12, 2);
    let event = pr_event(dir.path(), 8, true);
    let mut cmd = publish_cmd(&server.uri(), dir.path(), Some(&event));
    cmd.env("GITHUB_ACTIONS", "true").arg("--run-dir").arg(&rd);
    let (code, stdout, stderr) = run(cmd).await;
    assert_eq!(
        code, 4,
        "degraded publishing does not fail; the failed tests do\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("check run:   degraded: pull request from a fork"),
        "{stdout}"
    );
    assert!(stdout.contains("PR comment:  degraded"), "{stdout}");
    assert!(
        stderr.contains("::warning::pull request from a fork: GITHUB_TOKEN is read-only: the check run was not created"),
        "{stdout}"
    );
    let errors = stderr.lines().filter(|l| l.starts_with("::error ")).count();
    assert_eq!(errors, 10, "GitHub shows 10 errors per step\n{stderr}");
    assert!(
        stderr.contains("::notice::2 more failed tests are not annotated here"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .chain(stderr.lines())
            .filter(|l| l.contains("ghs_testtoken0123456789"))
            .all(|l| l.starts_with("::add-mask::")),
        "token printed outside its mask command\n{stdout}"
    );
    assert!(
        stderr.contains("::add-mask::ghs_testtoken0123456789"),
        "token not masked"
    );

    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("## health-predict: passed · decision DEPLOY"),
        "{summary}"
    );
    assert!(summary.contains("12 failed"), "{summary}");
    let out = outputs(&dir.path().join("output.txt"));
    assert_eq!(out["check-run"], "degraded");
    assert_eq!(out["comment"], "degraded");
    assert_eq!(out["tests-failed"], "12");
}

#[tokio::test]
async fn missing_permission_outside_a_pull_request_fails_with_a_hint() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/check-runs")))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest", "status": "403"
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let junit = junit_with_failures(dir.path(), 0, 2);
    let mut cmd = publish_cmd(&server.uri(), dir.path(), None);
    cmd.arg("--junit").arg(&junit);
    let (code, _, stderr) = run(cmd).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error: create check run: GitHub answered 403"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: grant the job `permissions: {checks: write"),
        "{stderr}"
    );
    // The job summary was still written before failing.
    assert!(dir.path().join("summary.md").exists());
}

#[tokio::test]
async fn secondary_rate_limit_is_retried_after_retry_after() {
    let server = MockServer::start().await;
    let checks = format!("/repos/{REPO}/check-runs");
    Mock::given(method("POST"))
        .and(path(checks.clone()))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("retry-after", "1")
                .insert_header("x-ratelimit-remaining", "4000")
                .set_body_json(json!({
                    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                    "status": "403"
                })),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(checks))
        .respond_with(check_run_responder(3))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let junit = junit_with_failures(dir.path(), 0, 4);
    let mut cmd = publish_cmd(&server.uri(), dir.path(), None);
    cmd.args(["--output", "json", "--junit"]).arg(&junit);
    let start = Instant::now();
    let (code, stdout, stderr) = run(cmd).await;
    assert_eq!(code, 0, "{stderr}");
    // Honoured the server's wait (a lower bound, not a timing benchmark).
    assert!(start.elapsed() >= Duration::from_millis(950));
    let report: Value = serde_json::from_str(&stdout).expect(&stdout);
    assert_eq!(report["check_run"]["status"], "done");
    assert_eq!(report["conclusion"], "success");
}

#[tokio::test]
async fn an_oversized_job_summary_is_trimmed_under_1_mib_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let junit = junit_with_failures(dir.path(), 1, 1);
    let extra = dir.path().join("extra.md");
    let mut md = String::from("## Extra\n\n```\n");
    while md.len() < 1_600_000 {
        md.push_str("a long line of pipeline log output that nobody will read in full\n");
    }
    md.push_str("```\n");
    std::fs::write(&extra, &md).unwrap();
    let mut cmd = publish_cmd("http://127.0.0.1:9", dir.path(), None);
    cmd.env_remove("GITHUB_TOKEN")
        .args(["--output", "json", "--junit"])
        .arg(&junit)
        .arg("--summary")
        .arg(&extra);
    let (code, stdout, stderr) = run(cmd).await;
    assert_eq!(code, 4, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect(&stdout);
    assert_eq!(report["check_run"]["status"], "skipped");
    let written = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(written.len() <= 1024 * 1024, "{}", written.len());
    assert!(written.contains("bytes left out to stay within the 1048576-byte limit"));
    assert!(
        written.contains("### API tests"),
        "the report comes before the extra Markdown"
    );
    let trimmed = report["summary_trimmed_bytes"].as_u64().unwrap() as usize;
    assert!(trimmed > 500_000, "{trimmed}");
    assert_eq!(
        outputs(&dir.path().join("output.txt"))["summary-trimmed-bytes"],
        trimmed.to_string()
    );
    assert!(stderr.contains("the job summary was trimmed"), "{stderr}");
}

#[tokio::test]
async fn nothing_to_publish_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = publish_cmd("http://127.0.0.1:9", dir.path(), None);
    let (code, _, stderr) = run(cmd).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("hint: pass --run-dir DIR"), "{stderr}");
}

// ---------------------------------------------------------------- the composite action

mod action {
    //! Runs `action/action.yml`'s steps the way the runner does: each `run:` step in bash with
    //! its `env:` evaluated, its own `GITHUB_OUTPUT` file, `GITHUB_PATH` carried forward, `if:`
    //! conditions evaluated (status functions, `==`, `!=`, `&&`, `||`, `!`), `uses:` steps
    //! skipped. A fake `health-predict` records its arguments and writes step outputs.

    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use serde_norway::Value as Yaml;

    use super::outputs;
    use crate::support;
    use crate::support::workflow;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn action() -> Yaml {
        let text = std::fs::read_to_string(root().join("action/action.yml")).unwrap();
        serde_norway::from_str(&text).unwrap()
    }

    #[derive(Default)]
    struct Ctx {
        inputs: BTreeMap<String, String>,
        steps: BTreeMap<String, (String, BTreeMap<String, String>)>,
        failed: bool,
    }

    impl Ctx {
        /// The expression contexts the action reads, for the workflow runner's evaluator.
        fn value(&self) -> serde_json::Value {
            let steps: serde_json::Map<String, serde_json::Value> = self
                .steps
                .iter()
                .map(|(id, (outcome, outputs))| {
                    let v = serde_json::json!({
                        "outcome": outcome, "conclusion": outcome, "outputs": outputs,
                    });
                    (id.clone(), v)
                })
                .collect();
            // A local `./action` has no ref or repository.
            serde_json::json!({
                "inputs": self.inputs,
                "steps": steps,
                "github": {"token": "ghs_from_context", "action_ref": "", "action_repository": ""},
            })
        }

        /// Substitutes every `${{ expr }}` in a string.
        fn template(&self, s: &str) -> String {
            workflow::template(&self.value(), s, self.failed)
        }

        /// A step's `if:` (absent: `success()`).
        fn condition(&self, cond: Option<&str>) -> bool {
            workflow::eval_condition(&self.value(), cond.unwrap_or("success()"), self.failed)
        }
    }

    struct Outcome {
        outputs: BTreeMap<String, String>,
        steps: BTreeMap<String, String>,
    }

    /// Runs the action's steps with `given` inputs in `workspace`.
    fn run_action(
        given: &[(&str, &str)],
        workspace: &Path,
        extra_env: &[(&str, String)],
    ) -> Outcome {
        let a = action();
        let mut ctx = Ctx::default();
        for (name, spec) in a["inputs"].as_mapping().unwrap() {
            let name = workflow::scalar(name);
            let default = spec
                .get("default")
                .map(workflow::scalar)
                .unwrap_or_default();
            ctx.inputs.insert(name, default);
        }
        for (k, v) in given {
            assert!(ctx.inputs.contains_key(*k), "undeclared input {k}");
            ctx.inputs.insert((*k).to_owned(), (*v).to_owned());
        }
        // Input defaults may themselves be expressions (github-token).
        let resolved: BTreeMap<String, String> = ctx
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), ctx.template(v)))
            .collect();
        ctx.inputs = resolved;

        let temp = workspace.join("_runner_temp");
        std::fs::create_dir_all(&temp).unwrap();
        let github_path = workspace.join("_github_path");
        std::fs::write(&github_path, "").unwrap();
        let mut steps = BTreeMap::new();
        for (n, step) in a["runs"]["steps"].as_sequence().unwrap().iter().enumerate() {
            let id = step
                .get("id")
                .map(workflow::scalar)
                .unwrap_or_else(|| format!("step{n}"));
            if !ctx.condition(step.get("if").map(workflow::scalar).as_deref()) {
                ctx.steps
                    .insert(id.clone(), ("skipped".into(), BTreeMap::new()));
                steps.insert(id, "skipped".into());
                continue;
            }
            let Some(script) = step.get("run").map(workflow::scalar) else {
                // `uses:` steps (actions/cache) are the runner's business, not the action's.
                ctx.steps
                    .insert(id.clone(), ("success".into(), BTreeMap::new()));
                steps.insert(id, "success (uses: not run here)".into());
                continue;
            };
            assert_eq!(
                step["shell"],
                Yaml::String("bash".into()),
                "step {id} must use bash"
            );
            let out_file = workspace.join(format!("_output_{id}"));
            std::fs::write(&out_file, "").unwrap();
            let mut path = std::fs::read_to_string(&github_path)
                .unwrap()
                .lines()
                .rev()
                .map(str::to_owned)
                .collect::<Vec<_>>();
            path.push(std::env::var("PATH").unwrap_or_default());
            let mut cmd = std::process::Command::new("bash");
            cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script]);
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy().into_owned();
                if k.starts_with("GITHUB_") || k.starts_with("RUNNER_") || k.starts_with("HP_") {
                    cmd.env_remove(&k);
                }
            }
            cmd.env("PATH", path.join(":"))
                .env("GITHUB_ACTION_PATH", root().join("action"))
                .env("GITHUB_OUTPUT", &out_file)
                .env("GITHUB_PATH", &github_path)
                .env("GITHUB_STEP_SUMMARY", workspace.join("_summary.md"))
                .env("GITHUB_WORKSPACE", workspace)
                .env("RUNNER_TEMP", &temp)
                .env("RUNNER_OS", "Linux")
                .env("RUNNER_ARCH", "X64");
            for (k, v) in extra_env {
                cmd.env(k, v);
            }
            if let Some(env) = step.get("env").and_then(Yaml::as_mapping) {
                for (k, v) in env {
                    cmd.env(workflow::scalar(k), ctx.template(&workflow::scalar(v)));
                }
            }
            let wd = step
                .get("working-directory")
                .map(|w| ctx.template(&workflow::scalar(w)))
                .unwrap_or_else(|| ".".into());
            cmd.current_dir(workspace.join(wd));
            let (code, stdout, stderr) = support::run(&mut cmd);
            eprintln!("--- step {id} exit {code}\n{stdout}{stderr}");
            let outcome = if code == 0 { "success" } else { "failure" };
            if code != 0 {
                ctx.failed = true;
            }
            ctx.steps
                .insert(id.clone(), (outcome.into(), outputs(&out_file)));
            steps.insert(id, outcome.into());
        }
        let mut declared = BTreeMap::new();
        for (name, spec) in a["outputs"].as_mapping().unwrap() {
            declared.insert(
                workflow::scalar(name),
                ctx.template(&workflow::scalar(&spec["value"])),
            );
        }
        Outcome {
            outputs: declared,
            steps,
        }
    }

    /// A fake `health-predict`: logs its arguments (one per line, calls separated by `--`) and
    /// behaves like the real one's outputs for `pipeline run` and `report publish`.
    fn fake_binary(dir: &Path) -> PathBuf {
        let p = dir.join("health-predict");
        std::fs::write(
            &p,
            r#"#!/usr/bin/env bash
set -euo pipefail
{ printf '%s\n' "$@"; echo '--'; } >>"$FAKE_LOG"
out() { printf '%s<<ghadelimiter_fake\n%s\nghadelimiter_fake\n' "$1" "$2" >>"$GITHUB_OUTPUT"; }
case "$1" in
  --version) echo "health-predict 0.0.0-fake" ;;
  pipeline)
    run_dir="health-predict-run"
    mkdir -p "$run_dir"
    echo '{"run_id":"r1","exit_code":0}' >"$run_dir/run.json"
    echo '<testsuite name="api"><testcase name="ok"/></testsuite>' >"$run_dir/junit.xml"
    echo '# summary' >"$run_dir/summary.md"
    out decision promote; out model-version 3; out image "registry.local/hp:3"
    out drift-share 0.273; out tests-passed 9; out tests-failed 0
    out run-dir "$PWD/$run_dir"; out summary "$PWD/$run_dir/summary.md"; out junit "$PWD/$run_dir/junit.xml"
    exit "${FAKE_EXIT:-0}" ;;
  report)
    out conclusion success; out check-run-url "https://github.com/o/r/runs/1"; out comment-url "" ;;
esac
"#,
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn calls(log: &Path) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.split("--\n")
            .filter(|c| !c.is_empty())
            .map(|c| c.lines().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn scripts_are_strict_and_inputs_never_reach_run_as_expressions() {
        let a = action();
        assert_eq!(a["runs"]["using"], Yaml::String("composite".into()));
        let mut ids = Vec::new();
        for step in a["runs"]["steps"].as_sequence().unwrap() {
            ids.push(workflow::scalar(&step["id"]));
            if let Some(run) = step.get("run") {
                let run = workflow::scalar(run);
                assert!(!run.contains("${{"), "expression inside run: {run}");
                assert_eq!(workflow::scalar(&step["shell"]), "bash");
            }
            if let Some(uses) = step.get("uses") {
                let uses = workflow::scalar(uses);
                let sha = uses.split('@').nth(1).unwrap_or("");
                assert!(
                    sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                    "{uses} is not pinned to a commit"
                );
            }
        }
        for (name, spec) in a["outputs"].as_mapping().unwrap() {
            let value = workflow::scalar(&spec["value"]);
            let step = value
                .trim_start_matches("${{ steps.")
                .split('.')
                .next()
                .unwrap()
                .to_owned();
            assert!(
                ids.contains(&step),
                "output {name:?} reads unknown step {step}"
            );
        }
        for entry in std::fs::read_dir(root().join("action/scripts")).unwrap() {
            let p = entry.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.starts_with("#!/usr/bin/env bash\n"), "{}", p.display());
            if p.file_name().unwrap() != "lib.sh" {
                assert!(text.contains("\nset -euo pipefail\n"), "{}", p.display());
            }
        }
    }

    #[test]
    fn shellcheck_passes_on_the_action_scripts() {
        let Some(sc) = support::require_tool("shellcheck") else {
            return;
        };
        let mut cmd = std::process::Command::new(sc);
        cmd.arg("-x");
        for entry in std::fs::read_dir(root().join("action/scripts")).unwrap() {
            cmd.arg(entry.unwrap().path());
        }
        let (code, stdout, stderr) = support::run(&mut cmd);
        assert_eq!(code, 0, "{stdout}{stderr}");
    }

    #[test]
    fn pipeline_steps_set_every_declared_output_and_publish() {
        let ws = tempfile::tempdir().unwrap();
        let bin = fake_binary(&ws.path().join("."));
        let log = ws.path().join("calls.log");
        let out = run_action(
            &[
                ("command", "pipeline"),
                ("data", "data/reference.csv.gz"),
                ("deploy", "kubernetes"),
                ("force-retrain", "true"),
                ("args", "--seed\n42 with space"),
                ("binary", bin.to_str().unwrap()),
            ],
            ws.path(),
            &[("FAKE_LOG", log.display().to_string())],
        );
        assert_eq!(out.steps["key"], "success");
        assert_eq!(out.steps["cache"], "skipped");
        assert_eq!(out.steps["install"], "success");
        assert_eq!(out.steps["run"], "success");
        assert_eq!(out.steps["publish"], "success");
        assert_eq!(out.steps["diagnostics"], "skipped");
        assert_eq!(out.steps["cleanup"], "success");

        let calls = calls(&log);
        assert_eq!(calls[0], ["--version"]);
        assert_eq!(
            calls[1],
            [
                "pipeline",
                "run",
                "--data",
                "data/reference.csv.gz",
                "--run-dir",
                "health-predict-run",
                "--deploy",
                "kubernetes",
                "--force-retrain",
                "--seed",
                "42 with space"
            ]
        );
        let run_dir = ws.path().join("health-predict-run");
        assert_eq!(
            calls[2],
            [
                "report".to_owned(),
                "publish".into(),
                "--run-dir".into(),
                run_dir.display().to_string(),
                "--junit".into(),
                run_dir.join("junit.xml").display().to_string(),
                "--summary".into(),
                run_dir.join("summary.md").display().to_string(),
                "--check-name".into(),
                "health-predict".into(),
                "--comment".into(),
                "auto".into(),
            ]
        );
        let o = &out.outputs;
        assert_eq!(o["decision"], "promote");
        assert_eq!(o["model-version"], "3");
        assert_eq!(o["image"], "registry.local/hp:3");
        assert_eq!(o["drift-share"], "0.273");
        assert_eq!(o["tests-passed"], "9");
        assert_eq!(o["tests-failed"], "0");
        assert_eq!(o["run-dir"], run_dir.display().to_string());
        assert_eq!(o["exit-code"], "0");
        assert_eq!(o["conclusion"], "success");
        assert_eq!(o["check-run-url"], "https://github.com/o/r/runs/1");
        assert_eq!(o["diagnostics"], "");
        assert!(
            !ws.path()
                .join("_runner_temp/health-predict-action")
                .exists()
        );
    }

    #[test]
    fn a_failed_command_still_publishes_collects_diagnostics_and_cleans_up() {
        let ws = tempfile::tempdir().unwrap();
        let bin = fake_binary(ws.path());
        let log = ws.path().join("calls.log");
        let out = run_action(
            &[("command", "pipeline"), ("binary", bin.to_str().unwrap())],
            ws.path(),
            &[
                ("FAKE_LOG", log.display().to_string()),
                ("FAKE_EXIT", "3".into()),
            ],
        );
        assert_eq!(out.steps["run"], "failure");
        assert_eq!(out.steps["publish"], "success");
        assert_eq!(out.steps["diagnostics"], "success");
        assert_eq!(out.steps["cleanup"], "success");
        assert_eq!(out.outputs["exit-code"], "3");
        assert_eq!(out.outputs["decision"], "promote");
        let diag = PathBuf::from(&out.outputs["diagnostics"]);
        assert!(diag.join("run.json").is_file(), "{}", diag.display());
        let context = std::fs::read_to_string(diag.join("context.txt")).unwrap();
        assert!(context.contains("exit-code=3"), "{context}");
        // Cleanup keeps only the diagnostics.
        let left: Vec<_> = std::fs::read_dir(diag.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["diagnostics"]);
    }

    #[test]
    fn unknown_commands_and_missing_inputs_fail_before_running_anything() {
        let ws = tempfile::tempdir().unwrap();
        let bin = fake_binary(ws.path());
        let log = ws.path().join("calls.log");
        for (inputs, message) in [
            (vec![("command", "launch")], "unknown command 'launch'"),
            (
                vec![("command", "deploy")],
                "command deploy needs the image input",
            ),
        ] {
            let mut given = inputs.clone();
            given.push(("binary", bin.to_str().unwrap()));
            let out = run_action(
                &given,
                ws.path(),
                &[("FAKE_LOG", log.display().to_string())],
            );
            assert_eq!(out.steps["run"], "failure", "{message}");
            assert_eq!(out.outputs["exit-code"], "");
        }
        assert!(calls(&log).iter().all(|c| c[0] == "--version"));
    }
}

// ---------------------------------------------------------------- workflow linting

fn workflows() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_four_workflows_exist() {
    let names: Vec<String> = workflows()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for w in [
        "ci.yml",
        "deploy.yml",
        "pr-check.yml",
        "publish-fork.yml",
        "scheduled-retrain.yml",
    ] {
        assert!(names.iter().any(|n| n == w), "missing {w} in {names:?}");
    }
}

#[test]
fn actionlint_passes_on_every_workflow() {
    let Some(actionlint) = support::require_tool("actionlint") else {
        return;
    };
    let mut cmd = std::process::Command::new(actionlint);
    cmd.arg("-no-color")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(workflows());
    let (code, stdout, stderr) = support::run(&mut cmd);
    assert_eq!(code, 0, "actionlint found problems:\n{stdout}{stderr}");
}

#[test]
fn workflows_pin_actions_by_commit_and_keep_expressions_out_of_run_blocks() {
    for wf in workflows() {
        let text = std::fs::read_to_string(&wf).unwrap();
        let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        let name = wf.display();
        assert!(
            doc.get("permissions").is_some(),
            "{name}: no top-level permissions"
        );
        assert!(
            doc.get("concurrency").is_some(),
            "{name}: no concurrency group"
        );
        for (job_name, job) in doc["jobs"].as_mapping().unwrap() {
            for step in job["steps"].as_sequence().unwrap() {
                if let Some(run) = step.get("run").and_then(|r| r.as_str()) {
                    assert!(
                        !run.contains("${{"),
                        "{name} {job_name:?}: expression in run:\n{run}"
                    );
                }
                if let Some(uses) = step.get("uses").and_then(|u| u.as_str()) {
                    if uses.starts_with("./") {
                        continue;
                    }
                    let sha = uses.split('@').nth(1).unwrap_or("");
                    assert!(
                        sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                        "{name}: {uses} is not pinned to a full commit SHA"
                    );
                    let line = text.lines().find(|l| l.contains(uses)).unwrap();
                    assert!(line.contains("# v"), "{name}: say which tag {uses} is");
                }
            }
        }
    }
}

#[test]
fn action_and_workflows_match_their_json_schemas() {
    let Some(check) = support::require_tool("check-jsonschema") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut a = std::process::Command::new(&check);
    a.args(["--builtin-schema", "vendor.github-actions"])
        .arg(root.join("action/action.yml"));
    let (code, stdout, stderr) = support::run(&mut a);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut w = std::process::Command::new(&check);
    w.args(["--builtin-schema", "vendor.github-workflows"])
        .args(workflows());
    let (code, stdout, stderr) = support::run(&mut w);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

// ---------------------------------------------------------------- fork PRs via workflow_run

/// The `workflow_run` payload GitHub sends when a fork's `pr-check` run completes: the fork's
/// pull request is not listed (`pull_requests` is empty for forks).
fn workflow_run_event(dir: &Path) -> PathBuf {
    let p = dir.join("workflow_run.json");
    std::fs::write(
        &p,
        json!({
            "action": "completed",
            "workflow_run": {
                "id": 99, "name": "pr-check", "event": "pull_request", "status": "completed",
                "conclusion": "success", "head_sha": HEAD_SHA, "head_branch": "feature",
                "pull_requests": [],
                "head_repository": {"full_name": "someone/health-predict"},
                "repository": {"full_name": REPO}
            },
            "repository": {"full_name": REPO}
        })
        .to_string(),
    )
    .unwrap();
    p
}

/// What the fork's run uploaded: its run directory and its own event payload.
fn fork_artifact(dir: &Path, pr: u64) -> PathBuf {
    let art = dir.join("artifact");
    support::runs::copy_dir(
        &support::runs::simulated().join("batch_3"),
        &art.join("health-predict-run"),
    );
    std::fs::copy(pr_event(dir, pr, true), art.join("event.json")).unwrap();
    art
}

fn pull(pr: u64, head_sha: &str) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/{REPO}/pulls/{pr}"), "id": 1000 + pr,
        "number": pr, "state": "open",
        "head": {"sha": head_sha, "ref": "feature", "label": "someone:feature"},
        "base": {"sha": SHA, "ref": "main", "label": "octo-org:main"}
    })
}

#[tokio::test]
async fn fork_results_are_published_from_the_artifact_by_workflow_run() {
    let server = MockServer::start().await;
    let pr = 31;
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/check-runs")))
        .respond_with(check_run_responder(41))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/pulls/{pr}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(pull(pr, HEAD_SHA)))
        .expect(1)
        .mount(&server)
        .await;
    let list = format!("/repos/{REPO}/issues/{pr}/comments");
    Mock::given(method("GET"))
        .and(path(list.clone()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let ours = "<!-- health-predict:report check=\"health-predict\" -->\nx";
    Mock::given(method("POST"))
        .and(path(list.clone()))
        .respond_with(ResponseTemplate::new(201).set_body_json(comment(901, pr, ours)))
        .expect(1)
        .mount(&server)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let art = fork_artifact(dir.path(), pr);
    let event = workflow_run_event(dir.path());
    let mut cmd = publish_cmd(&server.uri(), dir.path(), None);
    cmd.env("GITHUB_EVENT_NAME", "workflow_run")
        .env("GITHUB_EVENT_PATH", &event)
        .args(["--output", "json", "--from-artifact"])
        .arg(&art);
    let (code, stdout, stderr) = run(cmd).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect(&stdout);
    assert_eq!(report["check_run"]["status"], "done", "{report}");
    assert_eq!(report["comment"]["status"], "done", "{report}");
    assert!(
        report["comment"]["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("created comment 901 on #{pr}")),
        "{report}"
    );
    let reqs = server.received_requests().await.unwrap();
    // The check run belongs to the fork's head commit, from the trusted workflow_run payload.
    let check = requests_to(&reqs, "POST", "/check-runs");
    let cbody: Value = serde_json::from_slice(&check[0].body).unwrap();
    assert_eq!(cbody["head_sha"], HEAD_SHA);
    assert_eq!(cbody["conclusion"], "success");
    // The comment is the run's report, with its charts, read from the artifact.
    let created = requests_to(&reqs, "POST", &format!("/issues/{pr}/comments"));
    let body: Value = serde_json::from_slice(&created[0].body).unwrap();
    let text = body["body"].as_str().unwrap();
    assert!(text.contains("decision DEPLOY"), "{text}");
    assert!(text.contains("```mermaid\nxychart-beta"), "{text}");
    assert!(text.contains("19 tests: **19 passed**"), "{text}");
}

#[tokio::test]
async fn an_artifact_naming_another_pull_request_gets_no_comment() {
    let server = MockServer::start().await;
    let pr = 32;
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/check-runs")))
        .respond_with(check_run_responder(42))
        .mount(&server)
        .await;
    // PR 32 is somebody else's pull request: its head is another commit.
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/pulls/{pr}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(pull(pr, SHA)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::path_regex("/issues/"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let art = fork_artifact(dir.path(), pr);
    let event = workflow_run_event(dir.path());
    let mut cmd = publish_cmd(&server.uri(), dir.path(), None);
    cmd.env("GITHUB_EVENT_NAME", "workflow_run")
        .env("GITHUB_EVENT_PATH", &event)
        .arg("--from-artifact")
        .arg(&art);
    let (code, stdout, stderr) = run(cmd).await;
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "pull request #{pr} has head {SHA}, not the workflow run's commit {HEAD_SHA}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("hint: the artifact's event.json names another pull request"));

    // An event.json for another commit is refused before anything is sent.
    let other = tempfile::tempdir().unwrap();
    let art = fork_artifact(other.path(), pr);
    let mut payload: Value =
        serde_json::from_str(&std::fs::read_to_string(art.join("event.json")).unwrap()).unwrap();
    payload["pull_request"]["head"]["sha"] = json!("1111111111111111111111111111111111111111");
    std::fs::write(art.join("event.json"), payload.to_string()).unwrap();
    let before = server.received_requests().await.unwrap().len();
    let mut cmd = publish_cmd(&server.uri(), other.path(), None);
    cmd.env("GITHUB_EVENT_NAME", "workflow_run")
        .env("GITHUB_EVENT_PATH", &event)
        .arg("--from-artifact")
        .arg(&art);
    let (code, _, stderr) = run(cmd).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("but the workflow run is for"), "{stderr}");
    assert_eq!(server.received_requests().await.unwrap().len(), before);
}
