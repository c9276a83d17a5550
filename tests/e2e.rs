//! End-to-end suites that need tools outside cargo: headless Chromium and the
//! Autobahn TestSuite. They are `#[ignore]`d so a plain `cargo test` works
//! on a bare machine; `bash tests/run.sh` installs the tools and runs them
//! with `--run-ignored all`. Each one fails if its suite fails — or if the
//! suite cannot run at all.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run_script(script: &str, args: &[&str]) {
    let status = Command::new("bash")
        .arg(root().join(script))
        .args(args)
        .current_dir(root())
        .status()
        .unwrap_or_else(|e| panic!("cannot start {script}: {e}"));
    assert!(status.success(), "{script} failed: {status}");
}

#[test]
#[ignore = "needs chromium + playwright-core; run via tests/run.sh"]
fn browser_home_page_in_headless_chromium() {
    run_script("tests/browser/run.sh", &["--bin", env!("CARGO_BIN_EXE_wsecho")]);
}

#[test]
#[ignore = "needs the Autobahn TestSuite; run via tests/run.sh"]
fn autobahn_fuzzingclient_against_the_server() {
    run_script("autobahn/run-server.sh", &["--bin", env!("CARGO_BIN_EXE_wsecho")]);
}

#[test]
#[ignore = "needs the Autobahn TestSuite; run via tests/run.sh"]
fn autobahn_fuzzingserver_against_the_client() {
    // The client offers permessage-deflate so groups 12/13 exercise it.
    let cmd = format!("'{}' --autobahn \"$URL\" --compress", env!("CARGO_BIN_EXE_wsecho-client"));
    run_script("autobahn/run-client.sh", &["--client-cmd", &cmd]);
}
