//! Downloading the UCI dataset from its public home and verifying it.
//!
//! The archive's layout is not trusted: `diabetic_data.csv` and `IDs_mapping.csv` are found by
//! name anywhere in the zip (also inside a nested zip), and each is verified by SHA-256 before it
//! is written. Files are written atomically and only when every checksum matched; a mismatch
//! leaves nothing behind. Transient failures (connection errors, 5xx, 429, a body cut short) are
//! retried with [`Backoff::DOWNLOAD`]; a 404 is final.

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::exit::{Diagnose, Exit};
use crate::retry::{Backoff, Decision, retry};

/// The dataset's public home (UCI Machine Learning Repository, dataset id 296).
pub const DEFAULT_URL: &str = "https://archive.ics.uci.edu/static/public/296/diabetes+130-us+hospitals+for+years+1999-2008.zip";

/// The files to extract and their published SHA-256 checksums.
pub const FILES: [(&str, &str); 2] = [
    (
        "diabetic_data.csv",
        "0689e7ec031237dc63031b938805c48377748761a3b26acab621567afa24df97",
    ),
    (
        "IDs_mapping.csv",
        "f1bb82b471cb34649352597572c9b1fb00bd27f77b9f5a22a03dc3eb1039749e",
    ),
];

/// The largest download accepted (the archive is a few megabytes).
pub const MAX_BYTES: u64 = 256 << 20;
/// How deep nested zips are searched.
const MAX_DEPTH: usize = 3;

/// What to fetch and where.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub url: String,
    pub out: PathBuf,
    /// File name -> expected SHA-256 (hex); defaults to [`FILES`].
    pub expected: Vec<(String, String)>,
    /// Per-attempt timeout.
    pub timeout: Duration,
    pub policy: Backoff,
}

impl FetchRequest {
    pub fn new(url: impl Into<String>, out: impl Into<PathBuf>) -> FetchRequest {
        FetchRequest {
            url: url.into(),
            out: out.into(),
            expected: FILES
                .iter()
                .map(|(n, h)| ((*n).to_owned(), (*h).to_owned()))
                .collect(),
            timeout: Duration::from_secs(300),
            policy: Backoff::DOWNLOAD,
        }
    }
}

/// One verified file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fetched {
    pub name: String,
    pub path: String,
    /// Where it was inside the archive.
    pub entry: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The outcome of a fetch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FetchReport {
    pub url: String,
    pub archive_bytes: u64,
    pub attempts: u32,
    pub files: Vec<Fetched>,
    pub seconds: f64,
}

/// Errors fetching the dataset.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot build an HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("download of {url} failed after {attempts} attempt(s)")]
    Transport {
        url: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status} (after {attempts} attempt(s))")]
    Status {
        url: String,
        status: u16,
        attempts: u32,
    },
    #[error("{url} sent more than {max} bytes")]
    TooLarge { url: String, max: u64 },
    #[error("{url} is not a readable zip archive")]
    Archive {
        url: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("the archive has no `{name}` (entries: {entries})")]
    NotInArchive { name: String, entries: String },
    #[error(
        "checksum mismatch for {name} (archive entry {entry}): expected sha256 {expected}, got \
         {actual}; nothing was written"
    )]
    Checksum {
        name: String,
        entry: String,
        expected: String,
        actual: String,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Diagnose for FetchError {
    fn exit(&self) -> Exit {
        match self {
            FetchError::Transport { .. } | FetchError::Status { .. } | FetchError::Client(_) => {
                Exit::Infra
            }
            FetchError::Write { .. } => Exit::Failure,
            _ => Exit::InvalidInput,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            FetchError::Status { status: 404, .. } => {
                "the dataset moved: pass its current address with --url (or HEALTH_PREDICT_DATA_URL)"
                    .into()
            }
            FetchError::Transport { .. } | FetchError::Status { .. } | FetchError::Client(_) => {
                "check the network (proxy variables, firewall) and try again; --url (or \
                 HEALTH_PREDICT_DATA_URL) points at a mirror"
                    .into()
            }
            FetchError::TooLarge { .. } | FetchError::Archive { .. } => {
                "the URL does not serve the UCI zip; check --url".into()
            }
            FetchError::NotInArchive { .. } => {
                "the archive does not hold the UCI files; check --url".into()
            }
            FetchError::Checksum { .. } => {
                "the download is corrupt or not the published dataset; retry, or pass \
                 --expect-sha256 NAME=HEX only if you trust a different release"
                    .into()
            }
            FetchError::Write { .. } => "check that the --out directory is writable".into(),
        })
    }
}

/// A failed attempt, classified for retrying.
#[derive(Debug)]
enum Attempt {
    Transport(reqwest::Error),
    Status(u16, Option<Duration>),
    TooLarge,
}

/// Downloads, verifies and writes the dataset files.
pub async fn fetch(req: &FetchRequest) -> Result<FetchReport, FetchError> {
    let start = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(req.timeout)
        .connect_timeout(Duration::from_secs(30))
        .user_agent(concat!("health-predict/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(FetchError::Client)?;
    let mut attempts = 0;
    let body = retry(
        &req.policy,
        |_| {
            attempts += 1;
            download(&client, &req.url)
        },
        |e| match e {
            Attempt::Transport(_) => Decision::Retry,
            Attempt::Status(s, after) if *s == 429 || *s >= 500 => {
                after.map_or(Decision::Retry, Decision::RetryAfter)
            }
            _ => Decision::Stop,
        },
    )
    .await
    .map_err(|(e, attempts)| match e {
        Attempt::Transport(source) => FetchError::Transport {
            url: req.url.clone(),
            attempts,
            source,
        },
        Attempt::Status(status, _) => FetchError::Status {
            url: req.url.clone(),
            status,
            attempts,
        },
        Attempt::TooLarge => FetchError::TooLarge {
            url: req.url.clone(),
            max: MAX_BYTES,
        },
    })?;
    let files = extract(&body, &req.url, &req.expected, &req.out)?;
    Ok(FetchReport {
        url: req.url.clone(),
        archive_bytes: body.len() as u64,
        attempts,
        files,
        seconds: start.elapsed().as_secs_f64(),
    })
}

async fn download(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, Attempt> {
    let mut resp = client.get(url).send().await.map_err(Attempt::Transport)?;
    let status = resp.status();
    if !status.is_success() {
        let after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(Attempt::Status(status.as_u16(), after));
    }
    if resp.content_length().is_some_and(|n| n > MAX_BYTES) {
        return Err(Attempt::TooLarge);
    }
    let mut body = Vec::new();
    // A body shorter than its Content-Length surfaces here as a transport error.
    while let Some(chunk) = resp.chunk().await.map_err(Attempt::Transport)? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > MAX_BYTES {
            return Err(Attempt::TooLarge);
        }
    }
    Ok(body)
}

/// Finds each expected file in the archive, verifies it, and writes all of them only when every
/// checksum matched.
fn extract(
    archive: &[u8],
    url: &str,
    expected: &[(String, String)],
    out: &Path,
) -> Result<Vec<Fetched>, FetchError> {
    let mut entries = Vec::new();
    let mut found: Vec<Option<(String, Vec<u8>)>> = vec![None; expected.len()];
    search(archive, "", 0, expected, &mut found, &mut entries).map_err(|source| {
        FetchError::Archive {
            url: url.to_owned(),
            source,
        }
    })?;
    let mut verified = Vec::new();
    for ((name, want), hit) in expected.iter().zip(found) {
        let Some((entry, bytes)) = hit else {
            return Err(FetchError::NotInArchive {
                name: name.clone(),
                entries: entries.join(", "),
            });
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(want) {
            return Err(FetchError::Checksum {
                name: name.clone(),
                entry,
                expected: want.clone(),
                actual,
            });
        }
        verified.push((name, entry, bytes, actual));
    }
    verified
        .into_iter()
        .map(|(name, entry, bytes, sha256)| {
            let path = out.join(name);
            crate::fsutil::write_atomic(&path, &bytes).map_err(|source| FetchError::Write {
                path: path.clone(),
                source,
            })?;
            Ok(Fetched {
                name: name.clone(),
                path: path.display().to_string(),
                entry,
                bytes: bytes.len() as u64,
                sha256,
            })
        })
        .collect()
}

/// Walks a zip (and zips inside it) collecting the first entry whose file name matches.
fn search(
    archive: &[u8],
    prefix: &str,
    depth: usize,
    expected: &[(String, String)],
    found: &mut [Option<(String, Vec<u8>)>],
    entries: &mut Vec<String>,
) -> Result<(), zip::result::ZipError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(archive))?;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i)?;
        if f.is_dir() {
            continue;
        }
        let name = f.name()?.into_owned();
        let full = format!("{prefix}{name}");
        let base = name
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or_default()
            .to_owned();
        entries.push(full.clone());
        let want = expected
            .iter()
            .position(|(n, _)| *n == base)
            .filter(|&k| found[k].is_none());
        let nested = depth < MAX_DEPTH && base.to_ascii_lowercase().ends_with(".zip");
        if want.is_none() && !nested {
            continue;
        }
        let mut bytes = Vec::new();
        (&mut f).take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(zip::result::ZipError::InvalidArchive(
                "an entry is larger than the size limit".into(),
            ));
        }
        drop(f);
        if let Some(k) = want {
            found[k] = Some((full, bytes));
        } else if nested {
            search(
                &bytes,
                &format!("{full}!/"),
                depth + 1,
                expected,
                found,
                entries,
            )?;
        }
    }
    Ok(())
}

/// Builds a zip with the given entries (deflated): used by tests and by anyone mirroring the
/// dataset.
pub fn build_zip(entries: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        w.start_file(*name, opts).map_err(std::io::Error::other)?;
        w.write_all(bytes)?;
    }
    Ok(w.finish().map_err(std::io::Error::other)?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    #[test]
    fn finds_files_by_name_anywhere_including_nested_zips() {
        let inner = build_zip(&[("deep/dir/IDs_mapping.csv", b"ids")]).unwrap();
        let outer = build_zip(&[
            ("dataset_diabetes/README", b"x"),
            ("dataset_diabetes/diabetic_data.csv", b"rows"),
            ("more/inner.zip", &inner),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let expected = vec![
            ("diabetic_data.csv".to_owned(), sha(b"rows")),
            ("IDs_mapping.csv".to_owned(), sha(b"ids")),
        ];
        let got = extract(&outer, "u", &expected, dir.path()).unwrap();
        assert_eq!(got[1].entry, "more/inner.zip!/deep/dir/IDs_mapping.csv");
        assert_eq!(
            std::fs::read(dir.path().join("IDs_mapping.csv")).unwrap(),
            b"ids"
        );
    }

    #[test]
    fn a_mismatch_writes_nothing() {
        let z = build_zip(&[
            ("a/diabetic_data.csv", b"rows"),
            ("IDs_mapping.csv", b"ids"),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let expected = vec![
            ("diabetic_data.csv".to_owned(), sha(b"rows")),
            ("IDs_mapping.csv".to_owned(), sha(b"other")),
        ];
        let err = extract(&z, "u", &expected, dir.path()).unwrap_err();
        assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let err = extract(b"not a zip", "u", &expected, dir.path()).unwrap_err();
        assert!(matches!(err, FetchError::Archive { .. }), "{err}");
        let z = build_zip(&[("x.csv", b"rows")]).unwrap();
        let err = extract(&z, "u", &expected, dir.path()).unwrap_err();
        assert!(err.to_string().contains("x.csv"), "{err}");
    }
}
