//! Files handed over between workflows: the uploaded run directory of a pull request's run
//! (`report publish --from-artifact`), and JUnit paths given as globs.
//!
//! An artifact of a fork's pull request is content the fork controls: it is only read (JSON,
//! JUnit, Markdown), never executed, and the PR number in it is verified with GitHub before
//! anything is written (see `publish`).

use std::path::{Path, PathBuf};

use super::GithubError;

/// What an artifact directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The run directory (the one holding `run.json`).
    pub run_dir: PathBuf,
    /// JUnit files next to or under it (`*.xml` with `junit` in the name).
    pub junit: Vec<PathBuf>,
    /// The pull request's own event payload (`event.json`), when uploaded.
    pub event: Option<PathBuf>,
}

/// Depth searched below the artifact root (upload-artifact keeps the paths below the common
/// ancestor of what was uploaded).
const MAX_DEPTH: usize = 4;

/// Finds the run directory, JUnit files and event payload in a downloaded artifact.
pub fn locate(root: &Path) -> Result<Artifact, GithubError> {
    let mut files = Vec::new();
    walk(root, 0, &mut files).map_err(|source| GithubError::ReadFile {
        path: root.to_owned(),
        source,
    })?;
    files.sort();
    let mut runs: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "run.json"))
        .collect();
    runs.sort_by_key(|p| p.components().count());
    let run_dir = match runs.as_slice() {
        [] => {
            return Err(GithubError::Missing {
                what: "run.json in the artifact",
                hint: format!(
                    "{} holds no run.json: upload the pipeline's run directory (RUN_DIR) in the pull request's workflow",
                    root.display()
                ),
            });
        }
        [one, rest @ ..]
            if rest
                .iter()
                .all(|r| r.components().count() > one.components().count()) =>
        {
            one.parent().unwrap_or(root).to_owned()
        }
        _ => {
            return Err(GithubError::Missing {
                what: "a single run directory in the artifact",
                hint: format!(
                    "{} holds several run.json files at the same depth: upload one run directory per artifact",
                    root.display()
                ),
            });
        }
    };
    let junit = files
        .iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "xml")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.to_ascii_lowercase().contains("junit"))
        })
        .cloned()
        .collect();
    let event = files
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "event.json"))
        .min_by_key(|p| p.components().count())
        .cloned();
    Ok(Artifact {
        run_dir,
        junit,
        event,
    })
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        // Symlinks are not followed: an artifact must not point the reader elsewhere.
        if ft.is_dir() && depth < MAX_DEPTH {
            walk(&e.path(), depth + 1, out)?;
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

/// Expands `*`, `?` and `**` in JUnit paths (`reports/**/TEST-*.xml`). A pattern without
/// wildcards is kept as is (a missing file is reported by the reader); a pattern that matches
/// nothing is an error, so a typo is not a silently empty report.
pub fn expand(patterns: &[PathBuf]) -> Result<Vec<PathBuf>, GithubError> {
    let mut out = Vec::new();
    for p in patterns {
        let text = p.to_string_lossy();
        if !text.contains(['*', '?']) {
            out.push(p.clone());
            continue;
        }
        let absolute = text.starts_with('/');
        let parts: Vec<&str> = text.split('/').filter(|s| !s.is_empty()).collect();
        let base = if absolute {
            PathBuf::from("/")
        } else {
            PathBuf::from(".")
        };
        let mut found = Vec::new();
        glob_walk(&base, &parts, &mut found);
        found.sort();
        found.dedup();
        if found.is_empty() {
            return Err(GithubError::Missing {
                what: "a JUnit file matching the pattern",
                hint: format!(
                    "`{text}` matched no file (relative to the working directory); check --junit"
                ),
            });
        }
        out.extend(found.into_iter().map(|f| {
            if absolute {
                f
            } else {
                f.strip_prefix(".").map(Path::to_owned).unwrap_or(f)
            }
        }));
    }
    Ok(out)
}

fn glob_walk(base: &Path, parts: &[&str], out: &mut Vec<PathBuf>) {
    let Some((first, rest)) = parts.split_first() else {
        if base.is_file() {
            out.push(base.to_owned());
        }
        return;
    };
    if *first == "**" {
        // zero directories, or one more and still under `**`
        glob_walk(base, rest, out);
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    glob_walk(&e.path(), parts, out);
                }
            }
        }
        return;
    }
    if !first.contains(['*', '?']) {
        glob_walk(&base.join(first), rest, out);
        return;
    }
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.') && wildcard(first.as_bytes(), name.as_bytes()) {
                glob_walk(&e.path(), rest, out);
            }
        }
    }
}

/// `*` and `?` matching within one path component.
fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_within_a_component() {
        assert!(wildcard(b"TEST-*.xml", b"TEST-api.xml"));
        assert!(wildcard(b"?unit.xml", b"junit.xml"));
        assert!(!wildcard(b"*.xml", b"junit.json"));
    }

    #[test]
    fn globs_expand_recursively_and_fail_on_no_match() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/junit-1.xml"), "x").unwrap();
        std::fs::write(d.path().join("a/b/junit-2.xml"), "x").unwrap();
        std::fs::write(d.path().join("a/b/other.txt"), "x").unwrap();
        let pat = d.path().join("**/junit-*.xml");
        let found = expand(&[pat]).unwrap();
        assert_eq!(
            found,
            vec![
                d.path().join("a/b/junit-2.xml"),
                d.path().join("a/junit-1.xml")
            ]
        );
        assert!(expand(&[d.path().join("*.nothing")]).is_err());
    }

    #[test]
    fn locates_the_run_directory_inside_an_artifact() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("health-predict-run");
        std::fs::create_dir_all(run.join("drift")).unwrap();
        std::fs::write(run.join("run.json"), "{}").unwrap();
        std::fs::write(run.join("junit.xml"), "<testsuite/>").unwrap();
        std::fs::write(d.path().join("api-junit.xml"), "<testsuite/>").unwrap();
        std::fs::write(d.path().join("event.json"), "{}").unwrap();
        let a = locate(d.path()).unwrap();
        assert_eq!(a.run_dir, run);
        assert_eq!(a.junit.len(), 2);
        assert_eq!(a.event, Some(d.path().join("event.json")));
        assert!(locate(&run.join("drift")).is_err());
    }
}
