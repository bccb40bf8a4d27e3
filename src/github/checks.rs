//! The check run: created with the first 50 annotations, then updated with the rest, 50 per
//! request (GitHub's limit), and completed with its conclusion in the last request.

use http::Method;
use octocrab::models::checks::CheckRun;
use serde_json::{Value, json};

use super::annotate::{CheckAnnotation, PER_REQUEST};
use super::api::Api;
use super::{GithubError, Repo};

/// Bytes kept of the check run's summary and text (GitHub allows 65,535 characters each).
pub const OUTPUT_LIMIT: usize = 65_000;

/// What to publish as a check run.
#[derive(Debug, Clone)]
pub struct CheckRunPlan {
    pub name: String,
    pub head_sha: String,
    pub title: String,
    pub summary: String,
    pub text: Option<String>,
    /// `success`, `failure`, `neutral`, ...
    pub conclusion: &'static str,
    pub annotations: Vec<CheckAnnotation>,
    pub details_url: Option<String>,
}

/// What was published.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    pub id: u64,
    pub html_url: Option<String>,
    pub requests: usize,
    pub annotations: usize,
}

fn output(plan: &CheckRunPlan, chunk: &[CheckAnnotation]) -> Value {
    let mut o = json!({
        "title": plan.title,
        "summary": crate::report::fit(&plan.summary, OUTPUT_LIMIT, None).text,
        "annotations": chunk,
    });
    if let Some(text) = &plan.text {
        o["text"] = json!(crate::report::fit(text, OUTPUT_LIMIT, None).text);
    }
    o
}

/// Creates the check run and sends every annotation; returns its id and URL.
pub async fn publish(
    api: &Api,
    repo: &Repo,
    plan: &CheckRunPlan,
) -> Result<Published, GithubError> {
    let chunks: Vec<&[CheckAnnotation]> = if plan.annotations.is_empty() {
        vec![&[]]
    } else {
        plan.annotations.chunks(PER_REQUEST).collect()
    };
    let now = jiff::Timestamp::now().to_string();
    let last = chunks.len() - 1;
    let mut body = json!({
        "name": plan.name,
        "head_sha": plan.head_sha,
        "started_at": now,
        "output": output(plan, chunks[0]),
    });
    if let Some(url) = &plan.details_url {
        body["details_url"] = json!(url);
    }
    complete(&mut body, last == 0, plan.conclusion);
    let created: CheckRun = api
        .call(
            "create check run",
            Method::POST,
            &format!("/repos/{}/{}/check-runs", repo.owner, repo.name),
            Some(&body),
        )
        .await?;
    let id = created.id.into_inner();
    let mut requests = 1;
    for (i, chunk) in chunks.iter().enumerate().skip(1) {
        let mut body = json!({ "output": output(plan, chunk) });
        complete(&mut body, i == last, plan.conclusion);
        let _: CheckRun = api
            .call(
                &format!(
                    "add annotations {}..{} to check run",
                    i * PER_REQUEST + 1,
                    i * PER_REQUEST + chunk.len()
                ),
                Method::PATCH,
                &format!("/repos/{}/{}/check-runs/{id}", repo.owner, repo.name),
                Some(&body),
            )
            .await?;
        requests += 1;
    }
    Ok(Published {
        id,
        html_url: created.html_url,
        requests,
        annotations: plan.annotations.len(),
    })
}

fn complete(body: &mut Value, last: bool, conclusion: &str) {
    if last {
        body["status"] = json!("completed");
        body["conclusion"] = json!(conclusion);
        body["completed_at"] = json!(jiff::Timestamp::now().to_string());
    } else {
        body["status"] = json!("in_progress");
    }
}
