//! The baseline: AWS's sample approach (Python + boto3), if an interpreter with boto3 is here.

use super::*;

pub(crate) struct Python {
    pub(crate) exe: PathBuf,
    pub(crate) version: String,
}

/// The interpreter for the baseline: BENCH_PYTHON, target/bench/venv, python3 with boto3, or a
/// new venv with boto3 from PyPI. The real executable, not a pyenv shim (a shell script).
pub(crate) fn find_python(target: &Path) -> Result<Python, String> {
    let probe = |exe: &Path| -> Option<Python> {
        let out = Command::new(exe)
            .args([
                "-c",
                "import sys, boto3; print(sys.executable); print(sys.version.split()[0], 'boto3', boto3.__version__)",
            ])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let exe = PathBuf::from(lines.next()?.trim());
        let version = format!("Python {}", lines.next()?.trim());
        Some(Python { exe, version })
    };
    if let Ok(p) = std::env::var("BENCH_PYTHON") {
        return probe(Path::new(&p)).ok_or_else(|| format!("BENCH_PYTHON={p} cannot import boto3"));
    }
    let venv = target.join("bench/venv");
    let venv_py = venv.join("bin/python3");
    if let Some(p) = probe(&venv_py) {
        return Ok(p);
    }
    if let Some(p) = probe(Path::new("python3")) {
        return Ok(p);
    }
    eprintln!("bench: installing boto3 into {}", venv.display());
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        && Command::new(&venv_py)
            .args(["-m", "pip", "install", "--quiet", "boto3"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !ok {
        return Err(
            "could not create a venv with boto3 (python3 -m venv; pip install boto3)".into(),
        );
    }
    probe(&venv_py).ok_or_else(|| "the new venv cannot import boto3".into())
}
