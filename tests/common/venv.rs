//! A Python package installed for the tests into a venv of its own from a hash-pinned
//! `requirements.txt` (`tests/sdk_py`: centrifuge-python, `tests/cent`: cent): made on first
//! run, unless the pinned version is importable from it already; every failure panics with
//! what is missing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A package in `dir/.venv`, pinned in `dir/requirements.txt`.
pub struct Venv {
    /// The directory with `requirements.txt`; the venv is its `.venv`.
    pub dir: PathBuf,
    /// The distribution name `requirements.txt` pins (`centrifuge-python`, `cent`).
    pub dist: &'static str,
    /// The module it is imported as (`centrifuge`, `cent`).
    pub module: &'static str,
    /// What it is, for the panics (`the centrifuge-python SDK`).
    pub what: &'static str,
}

impl Venv {
    /// `tests/<dir>` of this crate.
    pub fn in_tests(
        dir: &str,
        dist: &'static str,
        module: &'static str,
        what: &'static str,
    ) -> Venv {
        Venv {
            dir: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests")
                .join(dir),
            dist,
            module,
            what,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(".venv")
    }

    pub fn python(&self) -> PathBuf {
        self.path().join("bin/python")
    }

    fn requirements(&self) -> PathBuf {
        self.dir.join("requirements.txt")
    }

    /// The version `requirements.txt` pins.
    pub fn pinned_version(&self) -> String {
        let path = self.requirements();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let prefix = format!("{}==", self.dist);
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{} pins no {}", path.display(), self.dist))
            .to_owned()
    }

    /// The version importable from the venv, if any.
    pub fn installed_version(&self) -> Option<String> {
        let output = Command::new(self.python())
            .arg("-c")
            .arg(format!(
                "import {}, importlib.metadata as m; print(m.version('{}'))",
                self.module, self.dist
            ))
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Makes the venv and installs the lock file, unless the pinned version is importable
    /// already; panics with what is missing. Callers run it once per test binary (a `Once`).
    pub fn install(&self) {
        let pinned = self.pinned_version();
        if self.installed_version().as_deref() == Some(pinned.as_str()) {
            return;
        }
        let venv = self.path();
        let has_pip = Command::new(self.python())
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_pip {
            // A venv made without ensurepip (Debian's python3 without python3-venv) has no
            // pip: start again.
            let _ = std::fs::remove_dir_all(&venv);
            let output = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "this test needs python3 (>= 3.11) to install {} from {} into {}: {e}",
                        self.what,
                        self.requirements().display(),
                        venv.display()
                    )
                });
            if !output.status.success() {
                let _ = std::fs::remove_dir_all(&venv);
                panic!(
                    "`python3 -m venv {}` failed: this test needs python3's venv module with \
                     ensurepip (on Debian/Ubuntu: apt-get install python3-venv)\n{}",
                    venv.display(),
                    tail(&output)
                );
            }
        }
        let output = Command::new(self.python())
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--require-hashes",
                "-r",
            ])
            .arg(self.requirements())
            .output()
            .expect("the venv's python runs");
        assert!(
            output.status.success(),
            "`{} -m pip install --require-hashes -r requirements.txt` in {} failed: {} could \
             not be installed from PyPI\n{}",
            self.python().display(),
            self.dir.display(),
            self.what,
            tail(&output)
        );
        let installed = self.installed_version();
        assert_eq!(
            installed.as_deref(),
            Some(pinned.as_str()),
            "{} {pinned} is not importable from {} after pip install",
            self.dist,
            venv.display()
        );
    }
}

/// The last 30 lines of what a command printed.
fn tail(output: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
