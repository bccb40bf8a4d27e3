//! One pull-request comment per check name, found again by a hidden marker and edited in place,
//! so re-runs update the same comment instead of adding new ones.

use http::Method;
use octocrab::models::issues::Comment;
use serde_json::json;

use super::api::Api;
use super::{GithubError, Repo};

/// Bytes kept of a comment body (GitHub allows 65,536 characters).
pub const BODY_LIMIT: usize = 65_000;
/// Pages of 100 comments searched for the marker (a PR with more than 3,000 comments gets a new one).
const MAX_PAGES: u32 = 30;

/// The hidden marker that identifies our comment for this check name.
pub fn marker(check_name: &str) -> String {
    // Without `<`, `>` and line breaks the name can neither close the HTML comment nor the line.
    let safe: String = check_name
        .chars()
        .filter(|c| !matches!(c, '<' | '>' | '"' | '\n' | '\r'))
        .collect();
    format!("<!-- health-predict:report check=\"{safe}\" -->")
}

/// Whether the comment was new or edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
}

/// The comment's id, URL and what happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Upserted {
    pub id: u64,
    pub url: String,
    pub action: Action,
}

/// Finds our comment on the PR (by marker) and updates it, or creates it.
pub async fn upsert(
    api: &Api,
    repo: &Repo,
    pr: u64,
    marker: &str,
    markdown: &str,
) -> Result<Upserted, GithubError> {
    let fitted = crate::report::fit(markdown, BODY_LIMIT - marker.len() - 2, None);
    let body = format!("{marker}\n{}", fitted.text);
    let existing = find(api, repo, pr, marker).await?;
    let (comment, action): (Comment, Action) = match existing {
        Some(id) => (
            api.call(
                "update PR comment",
                Method::PATCH,
                &format!("/repos/{}/{}/issues/comments/{id}", repo.owner, repo.name),
                Some(&json!({ "body": body })),
            )
            .await?,
            Action::Updated,
        ),
        None => (create(api, repo, pr, marker, &body).await?, Action::Created),
    };
    Ok(Upserted {
        id: comment.id.into_inner(),
        url: comment.html_url.to_string(),
        action,
    })
}

/// Creates the comment. Creation is not idempotent: when an attempt fails in a way that may have
/// reached GitHub (5xx, connection lost), look for the marker before trying again, so a retry
/// never leaves two comments.
async fn create(
    api: &Api,
    repo: &Repo,
    pr: u64,
    marker: &str,
    body: &str,
) -> Result<Comment, GithubError> {
    let url = format!("/repos/{}/{}/issues/{pr}/comments", repo.owner, repo.name);
    let payload = json!({ "body": body });
    let once = api.with_policy(api.policy().with_attempts(1));
    match once
        .call("create PR comment", Method::POST, &url, Some(&payload))
        .await
    {
        Ok(c) => Ok(c),
        Err(
            e @ (GithubError::Api {
                status: 400..=499, ..
            }
            | GithubError::Decode { .. }),
        ) => Err(e),
        Err(first) => {
            tracing::info!("creating the PR comment failed ({first}); checking whether it exists");
            match find(api, repo, pr, marker).await? {
                Some(id) => {
                    api.call(
                        "update PR comment",
                        Method::PATCH,
                        &format!("/repos/{}/{}/issues/comments/{id}", repo.owner, repo.name),
                        Some(&payload),
                    )
                    .await
                }
                None => {
                    api.call("create PR comment", Method::POST, &url, Some(&payload))
                        .await
                }
            }
        }
    }
}

async fn find(api: &Api, repo: &Repo, pr: u64, marker: &str) -> Result<Option<u64>, GithubError> {
    for page in 1..=MAX_PAGES {
        let comments: Vec<Comment> = api
            .call(
                "list PR comments",
                Method::GET,
                &format!(
                    "/repos/{}/{}/issues/{pr}/comments?per_page=100&page={page}",
                    repo.owner, repo.name
                ),
                None::<&()>,
            )
            .await?;
        if let Some(c) = comments
            .iter()
            .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
        {
            return Ok(Some(c.id.into_inner()));
        }
        if comments.len() < 100 {
            break;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_an_html_comment_that_cannot_be_closed_early() {
        assert_eq!(
            marker("health-predict"),
            "<!-- health-predict:report check=\"health-predict\" -->"
        );
        let m = marker("a-->b\n");
        assert_eq!(m.matches("-->").count(), 1, "{m}");
    }
}
