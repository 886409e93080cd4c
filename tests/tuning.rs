//! tuning/ (issue 14): `check.sh` reports this host against the recommendations without
//! crashing (it may report shortfalls here) and fails when a shortfall caps the connection
//! limit asked; `apply.sh --dry-run` shows what it would change and changes nothing.

use std::path::Path;
use std::process::Command;

fn script(name: &str) -> Command {
    Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tuning")
            .join(name),
    )
}

#[test]
fn check_reports_every_setting_and_fails_only_when_the_connections_are_capped() {
    let output = script("check.sh").output().expect("check.sh runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.code().is_some(), "{output:?}");
    for key in [
        "fs.file-max",
        "fs.nr_open",
        "net.core.somaxconn",
        "open files",
    ] {
        assert!(text.contains(key), "{key} in {text}");
    }
    assert!(
        text.contains("shortfall(s) capping the connections"),
        "{text}"
    );
    // No limit given: only io_uring being off could fail it, and it is on here.
    assert_eq!(output.status.code(), Some(0), "{text}");

    // More connections than this process may open (its hard limit is 20,000 here): capped.
    let output = script("check.sh")
        .args(["--connections", "100000000"])
        .output()
        .expect("check.sh runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("CAPS"), "{text}");
    assert!(text.contains("open files"), "{text}");
}

#[test]
fn apply_dry_run_shows_the_changes_and_changes_nothing() {
    let target = Path::new("/etc/sysctl.d/60-ringcast.conf");
    let before = std::fs::read(target).ok();
    let output = script("apply.sh")
        .arg("--dry-run")
        .output()
        .expect("apply.sh runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(text.contains("== kernel settings"), "{text}");
    assert!(text.contains("/etc/sysctl.d/60-ringcast.conf"), "{text}");
    assert!(text.contains("dry run:"), "{text}");
    assert_eq!(std::fs::read(target).ok(), before, "nothing written");
    let output = script("apply.sh").arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}
