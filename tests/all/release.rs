//! Releases as a user meets them: `scripts/release-archive.sh` builds the archive layout the
//! release workflow publishes, an HTTP server on 127.0.0.1 serves it as a GitHub release would
//! (`BASE/vX.Y.Z/ASSET`), and the action's own `cache-key.sh` + `install.sh` install from it with
//! the real `curl`, `sha256sum` and `tar`. Every way a download can go wrong must fail with its
//! own exit code and a message that says what to do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::support;

const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));
const X64: &str = "x86_64-unknown-linux-musl";
const ARM64: &str = "aarch64-unknown-linux-musl";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A stand-in for the binary (archiving the 100 MB debug build would dominate the test's time;
/// the scripts treat the file as opaque). It answers `--version` like the real one.
fn fake_binary(dir: &Path) -> PathBuf {
    let p = dir.join("health-predict");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"health-predict {} (stand-in)\"\n",
            env!("CARGO_PKG_VERSION")
        ),
    )
    .unwrap();
    make_executable(&p);
    p
}

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs scripts/release-archive.sh; returns (code, stdout, stderr).
fn archive(version: &str, target: &str, out: &Path, binary: &Path) -> (i32, String, String) {
    let mut cmd = Command::new(root().join("scripts/release-archive.sh"));
    cmd.args(["--version", version, "--target", target, "--commit", COMMIT])
        .arg("--out")
        .arg(out)
        .arg("--binary")
        .arg(binary)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    support::run(&mut cmd)
}

/// A release directory as the workflow publishes it: both archives and SHA256SUMS.
fn release_dir(dir: &Path) -> PathBuf {
    let bin = fake_binary(dir);
    let out = dir.join("www").join(VERSION);
    for target in [X64, ARM64] {
        let (code, stdout, stderr) = archive(VERSION, target, &out, &bin);
        assert_eq!(code, 0, "{stdout}{stderr}");
    }
    dir.join("www")
}

fn asset(target: &str) -> String {
    format!("health-predict-{VERSION}-{target}.tar.gz")
}

/// A static file server on 127.0.0.1 recording every requested path; stops when dropped.
struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

impl Server {
    fn start(root: PathBuf) -> Server {
        use axum::extract::Path as UrlPath;
        use axum::http::StatusCode;

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::get(move |UrlPath(path): UrlPath<String>| {
                let root = root.clone();
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(path.clone());
                    if path.split('/').any(|c| c == ".." || c.is_empty()) {
                        return Err(StatusCode::BAD_REQUEST);
                    }
                    tokio::fs::read(root.join(&path))
                        .await
                        .map_err(|_| StatusCode::NOT_FOUND)
                }
            }),
        );
        rt.spawn(async move { axum::serve(listener, app).await });
        Server {
            addr,
            requests,
            _rt: rt,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    outputs: String,
    github_path: String,
}

impl Run {
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs an action script the way the runner does, with its own GITHUB_OUTPUT/GITHUB_PATH.
fn action_script(script: &str, dir: &Path, env: &[(&str, &str)]) -> Run {
    let out = dir.join(format!("{script}.output"));
    let path = dir.join(format!("{script}.path"));
    std::fs::write(&out, "").unwrap();
    std::fs::write(&path, "").unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("action/scripts").join(script))
        .env_remove("HEALTH_PREDICT_BINARY")
        .env_remove("HEALTH_PREDICT_RELEASE_BASE_URL")
        .env_remove("GITHUB_ACTION_PATH")
        .env_remove("ImageOS")
        .env("GITHUB_OUTPUT", &out)
        .env("GITHUB_PATH", &path)
        .env("RUNNER_TEMP", dir.join("runner-temp"))
        .env("RUNNER_OS", "Linux")
        .env("RUNNER_ARCH", "X64")
        .env("HOME", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (code, stdout, stderr) = support::run(&mut cmd);
    Run {
        code,
        stdout,
        stderr,
        outputs: std::fs::read_to_string(&out).unwrap(),
        github_path: std::fs::read_to_string(&path).unwrap(),
    }
}

/// The value of a heredoc-delimited step output.
fn output(outputs: &str, name: &str) -> Option<String> {
    let mut lines = outputs.lines();
    while let Some(line) = lines.next() {
        if let Some((n, delim)) = line.split_once("<<")
            && n == name
        {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    return Some(value.join("\n"));
                }
                value.push(l);
            }
        }
    }
    None
}

fn install(dir: &Path, base: &str, extra: &[(&str, &str)]) -> Run {
    let mut env = vec![
        ("HP_MODE", "release"),
        ("HP_VERSION", VERSION),
        ("HEALTH_PREDICT_RELEASE_BASE_URL", base),
    ];
    env.extend_from_slice(extra);
    action_script("install.sh", dir, &env)
}

#[test]
fn archive_script_builds_the_published_layout_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path());
    let out = dir.path().join("dist");
    let (code, stdout, stderr) = archive(VERSION, X64, &out, &bin);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let path = out.join(asset(X64));
    assert!(stdout.contains(&path.display().to_string()), "{stdout}");

    // One top-level directory named like the archive, with exactly these files.
    let (code, listing, err) = support::run(
        Command::new("tar")
            .args(["--numeric-owner", "-tvzf"])
            .arg(&path),
    );
    assert_eq!(code, 0, "{err}");
    let top = format!("health-predict-{VERSION}-{X64}");
    let mut names: Vec<&str> = listing
        .lines()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    names.sort();
    let expected: Vec<String> = ["", "CHANGELOG.md", "COMMIT", "LICENSE", "README.md"]
        .iter()
        .map(|f| format!("{top}/{f}"))
        .chain([format!("{top}/health-predict")])
        .collect();
    assert_eq!(names, expected, "{listing}");
    let exe = listing
        .lines()
        .find(|l| l.ends_with("/health-predict"))
        .unwrap();
    assert!(exe.starts_with("-rwxr-xr-x 0/0 "), "{exe}");

    // Unpacked: the files are the repository's, COMMIT is the source commit.
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let (code, _, err) = support::run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&path)
            .arg("-C")
            .arg(&unpacked),
    );
    assert_eq!(code, 0, "{err}");
    let top_dir = unpacked.join(&top);
    assert_eq!(
        std::fs::read_to_string(top_dir.join("COMMIT")).unwrap(),
        format!("{COMMIT}\n")
    );
    assert_eq!(
        std::fs::read(top_dir.join("LICENSE")).unwrap(),
        std::fs::read(root().join("LICENSE")).unwrap()
    );
    assert_eq!(
        std::fs::read(top_dir.join("health-predict")).unwrap(),
        std::fs::read(&bin).unwrap()
    );

    // SHA256SUMS: `sha256sum` format, the archive's real digest.
    let bytes = std::fs::read(&path).unwrap();
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert_eq!(sums, format!("{}  {}\n", sha256_hex(&bytes), asset(X64)));

    // A second target joins the manifest (sorted); re-archiving replaces its line and produces
    // the same bytes (sorted entries, fixed owner and mtime, gzip without a timestamp).
    let (code, stdout, stderr) = archive(VERSION, ARM64, &out, &bin);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = archive(VERSION, X64, &out, &bin);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "not reproducible");
    let arm = std::fs::read(out.join(asset(ARM64))).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("SHA256SUMS")).unwrap(),
        format!(
            "{}  {}\n{}  {}\n",
            sha256_hex(&arm),
            asset(ARM64),
            sha256_hex(&bytes),
            asset(X64)
        )
    );
    let (code, check, err) = support::run(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(&out),
    );
    assert_eq!(code, 0, "{check}{err}");
}

#[test]
fn archive_script_refuses_a_tag_that_is_not_the_crate_version() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path());
    let out = dir.path().join("dist");
    let (code, stdout, stderr) = archive("v999.0.0", X64, &out, &bin);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("does not match Cargo.toml's version"),
        "{stderr}"
    );
    let (code, _, stderr) = archive("1.0", X64, &out, &bin);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--version must look like v1.2.3"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written on refusal");
}

#[test]
fn a_good_release_installs_verified_against_sha256sums() {
    let dir = tempfile::tempdir().unwrap();
    let www = release_dir(dir.path());
    let server = Server::start(www.clone());
    let run = install(dir.path(), &server.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(
        run.stdout.contains(&format!(
            "verified {} against the release's SHA256SUMS",
            asset(X64)
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("(stand-in)"),
        "ran --version: {}",
        run.stdout
    );
    let bin_dir = run.github_path.trim();
    let installed = Path::new(bin_dir).join("health-predict");
    assert_eq!(
        output(&run.outputs, "path").as_deref(),
        Some(installed.to_str().unwrap())
    );
    let (code, version, _) = support::run(Command::new(&installed).arg("--version"));
    assert_eq!(code, 0);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    assert_eq!(
        server.requests(),
        [
            format!("{VERSION}/{}", asset(X64)),
            format!("{VERSION}/SHA256SUMS")
        ]
    );

    // An explicit pin is verified instead of the manifest, which is then not fetched.
    let pin = sha256_hex(&std::fs::read(www.join(VERSION).join(asset(X64))).unwrap());
    let again = tempfile::tempdir().unwrap();
    let before = server.requests().len();
    // (as printed by tools that use upper case)
    let run = install(
        again.path(),
        &server.url(),
        &[("HP_SHA256", &pin.to_uppercase())],
    );
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(
        run.stdout.contains("against the pinned sha256 input"),
        "{}",
        run.stdout
    );
    assert_eq!(
        server.requests()[before..],
        [format!("{VERSION}/{}", asset(X64))]
    );

    // ARM64 runners get the aarch64 archive.
    let arm = tempfile::tempdir().unwrap();
    let run = install(arm.path(), &server.url(), &[("RUNNER_ARCH", "ARM64")]);
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(run.stdout.contains(&asset(ARM64)), "{}", run.stdout);
}

#[test]
fn a_tampered_archive_is_refused_before_it_is_unpacked() {
    let dir = tempfile::tempdir().unwrap();
    let www = release_dir(dir.path());
    let archive = www.join(VERSION).join(asset(X64));
    let mut bytes = std::fs::read(&archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&archive, bytes).unwrap();
    let server = Server::start(www);
    let run = install(dir.path(), &server.url(), &[]);
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout.contains(&format!(
            "{} does not match the release's SHA256SUMS",
            asset(X64)
        )) && run.stdout.contains("refusing to run it"),
        "{}",
        run.stdout
    );
    assert!(run.github_path.is_empty(), "nothing put on PATH");
    let unpacked = dir
        .path()
        .join("runner-temp/health-predict-action/release")
        .join(format!("health-predict-{VERSION}-{X64}"));
    assert!(!unpacked.exists(), "a refused archive is never unpacked");
}

#[test]
fn a_wrong_checksum_fails_whether_pinned_or_in_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let www = release_dir(dir.path());
    let server = Server::start(www.clone());

    let run = install(dir.path(), &server.url(), &[("HP_SHA256", &"0".repeat(64))]);
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout
            .contains("does not match the pinned sha256 input"),
        "{}",
        run.stdout
    );

    let run = install(dir.path(), &server.url(), &[("HP_SHA256", "not-hex")]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stdout.contains("sha256 must be 64 hex digits"),
        "{}",
        run.stdout
    );

    // The manifest lists another digest for the archive.
    let sums = www.join(VERSION).join("SHA256SUMS");
    let text = std::fs::read_to_string(&sums).unwrap();
    let wrong: String = text
        .lines()
        .map(|l| {
            let (_, name) = l.split_once("  ").unwrap();
            format!("{}  {name}\n", "a".repeat(64))
        })
        .collect();
    std::fs::write(&sums, wrong).unwrap();
    let run = install(dir.path(), &server.url(), &[]);
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout
            .contains("does not match the release's SHA256SUMS"),
        "{}",
        run.stdout
    );

    // The manifest has no line for this archive.
    std::fs::write(&sums, format!("{}  other.tar.gz\n", "a".repeat(64))).unwrap();
    let run = install(dir.path(), &server.url(), &[]);
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout
            .contains(&format!("SHA256SUMS has no line for {}", asset(X64))),
        "{}",
        run.stdout
    );

    // No manifest at all.
    std::fs::remove_file(&sums).unwrap();
    let run = install(dir.path(), &server.url(), &[]);
    assert_eq!(run.code, 5, "{}", run.text());
    assert!(
        run.stdout
            .contains("the checksum manifest SHA256SUMS is not published"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_missing_asset_or_release_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let www = release_dir(dir.path());
    std::fs::remove_file(www.join(VERSION).join(asset(ARM64))).unwrap();
    let server = Server::start(www);

    let run = install(dir.path(), &server.url(), &[("RUNNER_ARCH", "ARM64")]);
    assert_eq!(run.code, 5, "{}", run.text());
    assert!(
        run.stdout
            .contains(&format!("{} is not published at", asset(ARM64)))
            && run.stdout.contains("(HTTP 404)")
            && run.stdout.contains("set version: build"),
        "{}",
        run.stdout
    );

    let run = install(dir.path(), &server.url(), &[("HP_VERSION", "v0.0.1")]);
    assert_eq!(run.code, 5, "{}", run.text());
    assert!(
        run.stdout.contains("check that release v0.0.1 exists"),
        "{}",
        run.stdout
    );

    // Nothing listening: a network error, not a verification error.
    let port = support::free_port();
    let run = install(dir.path(), &format!("http://127.0.0.1:{port}"), &[]);
    assert_eq!(run.code, 5, "{}", run.text());
    assert!(run.stdout.contains("could not download"), "{}", run.stdout);
}

#[test]
fn unknown_architectures_and_systems_fail_before_any_download() {
    let dir = tempfile::tempdir().unwrap();
    let www = release_dir(dir.path());
    let server = Server::start(www);
    let run = install(dir.path(), &server.url(), &[("RUNNER_ARCH", "RISCV64")]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stdout
            .contains("no prebuilt binary for runner architecture 'RISCV64'"),
        "{}",
        run.stdout
    );
    let run = install(dir.path(), &server.url(), &[("RUNNER_OS", "macOS")]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stdout.contains("prebuilt binaries are Linux only"),
        "{}",
        run.stdout
    );
    // Plain http is for this machine only.
    let run = install(dir.path(), "http://mirror.example.com/releases", &[]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(run.stdout.contains("is not https"), "{}", run.stdout);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn a_commit_pin_accepts_only_the_release_built_from_that_commit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(release_dir(dir.path()));
    let run = install(dir.path(), &server.url(), &[("HP_EXPECT_COMMIT", COMMIT)]);
    assert_eq!(run.code, 0, "{}", run.text());
    let other = "f".repeat(40);
    let run = install(dir.path(), &server.url(), &[("HP_EXPECT_COMMIT", &other)]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stdout.contains(&format!("was built from '{COMMIT}'"))
            && run
                .stdout
                .contains("set version: build to compile this commit"),
        "{}",
        run.stdout
    );
}

#[test]
fn health_predict_binary_overrides_every_mode_without_downloading() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(release_dir(dir.path()));
    let own = dir.path().join("own");
    std::fs::create_dir(&own).unwrap();
    let bin = fake_binary(&own);
    let bin_s = bin.to_str().unwrap();

    let key = action_script(
        "cache-key.sh",
        dir.path(),
        &[("HEALTH_PREDICT_BINARY", bin_s)],
    );
    assert_eq!(key.code, 0, "{}", key.text());
    assert_eq!(output(&key.outputs, "mode").as_deref(), Some("binary"));
    assert_eq!(output(&key.outputs, "build").as_deref(), Some("false"));

    let run = install(
        dir.path(),
        &server.url(),
        &[("HEALTH_PREDICT_BINARY", bin_s)],
    );
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(
        run.stdout.contains(&format!(
            "using HEALTH_PREDICT_BINARY={bin_s} (no download, no build)"
        )),
        "{}",
        run.stdout
    );
    let linked = Path::new(run.github_path.trim()).join("health-predict");
    assert_eq!(
        std::fs::canonicalize(&linked).unwrap(),
        std::fs::canonicalize(&bin).unwrap()
    );
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    let plain = own.join("not-executable");
    std::fs::write(&plain, "").unwrap();
    let run = install(
        dir.path(),
        &server.url(),
        &[("HEALTH_PREDICT_BINARY", plain.to_str().unwrap())],
    );
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stdout.contains("is not an executable file"),
        "{}",
        run.stdout
    );
    assert!(run.github_path.is_empty());
}

#[test]
fn version_auto_follows_the_actions_own_ref() {
    let dir = tempfile::tempdir().unwrap();
    let key = |env: &[(&str, &str)]| {
        let mut e = vec![("HP_VERSION", "auto")];
        e.extend_from_slice(env);
        action_script("cache-key.sh", dir.path(), &e)
    };
    let (major, rest) = VERSION.split_once('.').unwrap();
    let minor = format!("{major}.{}", rest.split('.').next().unwrap());
    for r in [major, minor.as_str(), VERSION] {
        let run = key(&[("HP_ACTION_REF", r)]);
        assert_eq!(run.code, 0, "{r}: {}", run.text());
        assert_eq!(
            output(&run.outputs, "mode").as_deref(),
            Some("release"),
            "{r}"
        );
        assert_eq!(
            output(&run.outputs, "version").as_deref(),
            Some(VERSION),
            "{r}"
        );
        assert_eq!(output(&run.outputs, "commit"), None, "{r}");
    }
    // github.action_ref is not promised in composite actions: the checkout path has the ref.
    let path = format!("/home/runner/work/_actions/acme/health-predict/{major}/action");
    let run = key(&[("GITHUB_ACTION_PATH", &path)]);
    assert_eq!(
        output(&run.outputs, "version").as_deref(),
        Some(VERSION),
        "{}",
        run.text()
    );
    // Pinned by commit SHA: the checkout's release, tied to that commit.
    let run = key(&[("HP_ACTION_REF", COMMIT)]);
    assert_eq!(output(&run.outputs, "version").as_deref(), Some(VERSION));
    assert_eq!(output(&run.outputs, "commit").as_deref(), Some(COMMIT));
    // A branch or a local ./action: built from source, with a notice saying how to download.
    for (r, says) in [("main", "is not a release tag"), ("", "no action ref")] {
        let run = key(&[("HP_ACTION_REF", r)]);
        assert_eq!(run.code, 0, "{}", run.text());
        assert_eq!(
            output(&run.outputs, "mode").as_deref(),
            Some("build"),
            "{r:?}"
        );
        assert!(
            run.stdout.contains(says) && run.stdout.contains("::notice"),
            "{}",
            run.stdout
        );
    }
    // A release tag that is not the checkout's version is a contradiction, not a guess.
    let run = key(&[("HP_ACTION_REF", "v999.0.0")]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stdout.contains("does not match its Cargo.toml version"),
        "{}",
        run.stdout
    );
    let run = key(&[("HP_ACTION_REF", "v999")]);
    assert_eq!(run.code, 2, "{}", run.text());
    // An explicit version is taken as given.
    let run = key(&[("HP_VERSION", "v0.0.7")]);
    assert_eq!(output(&run.outputs, "version").as_deref(), Some("v0.0.7"));
}

#[test]
fn build_cache_key_covers_embedded_manifests_and_the_runner_image() {
    // A copy of what the key reads, so files can be changed.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("repo");
    std::fs::create_dir(&copy).unwrap();
    let (code, _, err) = support::run(
        Command::new("cp")
            .args([
                "-r",
                "action",
                "Cargo.toml",
                "Cargo.lock",
                "src",
                "k8s",
                "kind-config",
            ])
            .arg(&copy)
            .current_dir(root()),
    );
    assert_eq!(code, 0, "{err}");
    let key = |env: &[(&str, &str)]| {
        let out = dir.path().join("out");
        std::fs::write(&out, "").unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(copy.join("action/scripts/cache-key.sh"))
            .env("GITHUB_OUTPUT", &out)
            .env("HP_VERSION", "build")
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64")
            .env_remove("HEALTH_PREDICT_BINARY")
            .env_remove("ImageOS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (code, stdout, stderr) = support::run(&mut cmd);
        assert_eq!(code, 0, "{stdout}{stderr}");
        output(&std::fs::read_to_string(&out).unwrap(), "key").unwrap()
    };
    let base = key(&[("ImageOS", "ubuntu24")]);
    assert!(
        base.starts_with("health-predict-Linux-X64-ubuntu24-"),
        "{base}"
    );
    assert_eq!(key(&[("ImageOS", "ubuntu24")]), base, "stable");
    assert_ne!(key(&[("ImageOS", "ubuntu22")]), base, "runner image");
    for embedded in ["k8s", "kind-config"] {
        let first = std::fs::read_dir(copy.join(embedded))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_file())
            .unwrap();
        let before = std::fs::read(&first).unwrap();
        std::fs::write(&first, [before.as_slice(), b"\n# changed\n"].concat()).unwrap();
        assert_ne!(
            key(&[("ImageOS", "ubuntu24")]),
            base,
            "{embedded} is compiled in"
        );
        std::fs::write(&first, before).unwrap();
    }
    assert_eq!(key(&[("ImageOS", "ubuntu24")]), base);
}

#[test]
fn the_build_cache_is_saved_right_after_install_even_if_the_run_fails() {
    let text = std::fs::read_to_string(root().join("action/action.yml")).unwrap();
    let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let steps = doc["runs"]["steps"].as_sequence().unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    let pos = |id: &str| ids.iter().position(|i| *i == id).unwrap();
    let restore = &steps[pos("cache")];
    let save = &steps[pos("cache-save")];
    assert!(
        restore["uses"]
            .as_str()
            .unwrap()
            .starts_with("actions/cache/restore@")
    );
    assert!(
        save["uses"]
            .as_str()
            .unwrap()
            .starts_with("actions/cache/save@")
    );
    assert!(pos("cache") < pos("install") && pos("install") < pos("cache-save"));
    assert!(
        pos("cache-save") < pos("run"),
        "saved before the command can fail"
    );
    let cond = save["if"].as_str().unwrap();
    assert!(
        cond.starts_with("always()") && cond.contains("steps.install.outcome == 'success'"),
        "{cond}"
    );
    assert_eq!(restore["with"]["key"], save["with"]["key"]);
}

/// `cargo binstall` expands these templates (`{ name }`, `{ version }`, `{ target }`, `{ repo }`,
/// `{ archive-suffix }`, `{ bin }`, `{ binary-ext }`): they must name the archives the release
/// workflow publishes and the binary's path inside them.
#[test]
fn binstall_metadata_points_at_the_published_archives() {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    let package = manifest["package"].as_table().unwrap();
    let repo = package["repository"].as_str().unwrap();
    assert!(
        package["rust-version"].as_str().is_some(),
        "rust-version declared"
    );
    let binstall = package["metadata"]["binstall"].as_table().unwrap();
    assert_eq!(binstall["pkg-fmt"].as_str(), Some("tgz"));
    let expand = |template: &str, target: &str| {
        template
            .replace("{ name }", env!("CARGO_PKG_NAME"))
            .replace("{ version }", env!("CARGO_PKG_VERSION"))
            .replace("{ target }", target)
            .replace("{ repo }", repo)
            .replace("{ archive-suffix }", ".tar.gz")
            .replace("{ bin }", "health-predict")
            .replace("{ binary-ext }", "")
    };
    for (host, archive_target) in [
        (X64, X64),
        (ARM64, ARM64),
        ("x86_64-unknown-linux-gnu", X64),
        ("aarch64-unknown-linux-gnu", ARM64),
    ] {
        let table = binstall
            .get("overrides")
            .and_then(|o| o.get(host))
            .and_then(|o| o.as_table())
            .unwrap_or(binstall);
        let url = expand(table["pkg-url"].as_str().unwrap(), host);
        assert_eq!(
            url,
            format!(
                "{repo}/releases/download/{VERSION}/{}",
                asset(archive_target)
            ),
            "{host}"
        );
        let bin_dir = expand(table["bin-dir"].as_str().unwrap(), host);
        assert_eq!(
            bin_dir,
            format!("health-predict-{VERSION}-{archive_target}/health-predict"),
            "{host}"
        );
        assert!(
            !bin_dir.contains('{') && !url.contains('{'),
            "{url} {bin_dir}"
        );
    }
}
