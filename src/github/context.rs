//! Where the results go: the repository, the commit, and the pull request (read from the event
//! payload the runner writes to `GITHUB_EVENT_PATH`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde_json::Value;

use super::GithubError;

/// `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl FromStr for Repo {
    type Err = String;

    fn from_str(s: &str) -> Result<Repo, String> {
        let (owner, name) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not owner/name"))?;
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !ok(owner) || !ok(name) {
            return Err(format!("`{s}` is not owner/name"));
        }
        Ok(Repo {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// When to write the PR comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommentMode {
    /// On pull-request events; skipped elsewhere.
    #[default]
    Auto,
    /// Required: fail when there is no pull request to comment on.
    Always,
    /// Never comment.
    Never,
}

/// What the triggering event says about the pull request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventInfo {
    pub name: Option<String>,
    pub pr_number: Option<u64>,
    /// The PR's head commit: check runs belong there, not on the temporary merge commit.
    pub head_sha: Option<String>,
    /// The PR comes from a fork: its `GITHUB_TOKEN` is read-only.
    pub from_fork: bool,
    /// The PR number came from an uploaded artifact (content a fork controls): publishing must
    /// check with GitHub that this PR's head is `head_sha` before writing to it.
    pub pr_unverified: bool,
}

impl EventInfo {
    /// Reads the event payload (when given) for the PR number, head commit and fork status.
    pub fn load(name: Option<&str>, path: Option<&Path>) -> Result<EventInfo, GithubError> {
        let mut info = EventInfo {
            name: name.filter(|n| !n.is_empty()).map(str::to_owned),
            ..EventInfo::default()
        };
        let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(info);
        };
        let payload = read_payload(path)?;
        info.apply(&payload);
        Ok(info)
    }

    fn apply(&mut self, payload: &Value) {
        let pr = &payload["pull_request"];
        let run = &payload["workflow_run"];
        if run.is_object() {
            // `workflow_run`: the triggering run's commit; its pull requests are listed only
            // when they come from this repository (never for forks), so the number may be
            // missing here and come from the artifact instead.
            self.head_sha = run["head_sha"].as_str().map(str::to_owned);
            self.pr_number = run["pull_requests"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| {
                    p["head"]["sha"].as_str().is_none()
                        || p["head"]["sha"].as_str() == self.head_sha.as_deref()
                })
                .and_then(|p| p["number"].as_u64());
            let head = run["head_repository"]["full_name"].as_str();
            let base = run["repository"]["full_name"]
                .as_str()
                .or(payload["repository"]["full_name"].as_str());
            self.from_fork = matches!((head, base), (Some(h), Some(b)) if h != b);
        } else if pr.is_object() {
            self.pr_number = pr["number"].as_u64().or(payload["number"].as_u64());
            self.head_sha = pr["head"]["sha"].as_str().map(str::to_owned);
            let head = pr["head"]["repo"]["full_name"].as_str();
            let base = pr["base"]["repo"]["full_name"].as_str();
            self.from_fork = pr["head"]["repo"]["fork"].as_bool().unwrap_or(false)
                || matches!((head, base), (Some(h), Some(b)) if h != b);
        } else if let Some(n) = payload["issue"]["pull_request"]
            .is_object()
            .then(|| payload["issue"]["number"].as_u64())
            .flatten()
        {
            // issue_comment on a pull request
            self.pr_number = Some(n);
        }
    }

    /// Whether this is a `workflow_run` event (publishing on behalf of another run).
    pub fn is_workflow_run(&self) -> bool {
        self.name.as_deref() == Some("workflow_run")
    }

    /// For `workflow_run`: takes the PR number from the triggering run's own event payload,
    /// uploaded in its artifact, when the `workflow_run` payload does not list the PR (forks).
    /// The payload must name the same head commit; the number stays unverified until
    /// publishing has asked GitHub.
    pub fn adopt_artifact_event(&mut self, path: &Path) -> Result<(), GithubError> {
        if self.pr_number.is_some() {
            return Ok(());
        }
        let payload = read_payload(path)?;
        let mut theirs = EventInfo::default();
        theirs.apply(&payload);
        let Some(n) = theirs.pr_number else {
            return Ok(());
        };
        if theirs.head_sha.is_some() && theirs.head_sha != self.head_sha {
            return Err(GithubError::EventInvalid {
                path: path.to_owned(),
                reason: format!(
                    "it is for commit {} but the workflow run is for {}",
                    theirs.head_sha.as_deref().unwrap_or("?"),
                    self.head_sha.as_deref().unwrap_or("?")
                ),
            });
        }
        self.pr_number = Some(n);
        self.pr_unverified = true;
        self.from_fork |= theirs.from_fork;
        Ok(())
    }

    pub fn is_pull_request(&self) -> bool {
        self.pr_number.is_some()
    }
}

/// An event payload file as JSON.
fn read_payload(path: &Path) -> Result<Value, GithubError> {
    let text = std::fs::read_to_string(path).map_err(|source| GithubError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| GithubError::EventInvalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_repo() {
        let r: Repo = "octo-org/octo.repo".parse().unwrap();
        assert_eq!(r.to_string(), "octo-org/octo.repo");
        assert!("nope".parse::<Repo>().is_err());
        assert!("a/b/c".parse::<Repo>().is_err());
    }

    #[test]
    fn reads_pull_request_and_fork() {
        let mut e = EventInfo::default();
        e.apply(&json!({
            "number": 7,
            "pull_request": {
                "number": 7,
                "head": {"sha": "abc", "repo": {"full_name": "someone/fork", "fork": true}},
                "base": {"repo": {"full_name": "org/repo", "fork": false}}
            }
        }));
        assert_eq!(e.pr_number, Some(7));
        assert_eq!(e.head_sha.as_deref(), Some("abc"));
        assert!(e.from_fork);

        let mut same = EventInfo::default();
        same.apply(&json!({"pull_request": {"number": 8,
            "head": {"sha": "d", "repo": {"full_name": "org/repo", "fork": false}},
            "base": {"repo": {"full_name": "org/repo"}}}}));
        assert!(!same.from_fork);

        let mut run = EventInfo::default();
        run.apply(&json!({
            "workflow_run": {
                "head_sha": "f00", "event": "pull_request", "pull_requests": [],
                "head_repository": {"full_name": "someone/fork"},
                "repository": {"full_name": "org/repo"}
            }
        }));
        assert_eq!(run.head_sha.as_deref(), Some("f00"));
        assert_eq!(run.pr_number, None);
        assert!(run.from_fork);

        let mut push = EventInfo::default();
        push.apply(&json!({"ref": "refs/heads/main"}));
        assert!(!push.is_pull_request());
    }
}
