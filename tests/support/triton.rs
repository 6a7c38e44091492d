//! A real Triton Inference Server on loopback for the `triton` backend tests: the `tritonserver`
//! binary of the `nvidia-pytriton` wheel (scripts/setup-triton.sh installs it into
//! `.venv-triton`), serving the repository `spatialbot-edge triton-repo --platform python` writes
//! for a model folder. Killed when dropped (and by the kernel if the test process dies).
//!
//! Where the wheel is not installed the tests skip, saying so; under CI (or with
//! `SBE_REQUIRE_TRITON=1`) that is a failure.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TritonServer {
    child: Option<Child>,
    pub url: String,
    pub grpc_port: u16,
    pub repo: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The wheel's pieces: `tritonserver`, its bundled libraries, its python backend, the stub for
/// the venv's Python, and the venv's site-packages (numpy, onnxruntime for model.py).
pub struct Wheel {
    pub server: PathBuf,
    pub libs: PathBuf,
    pub backends: PathBuf,
    pub stub: PathBuf,
    pub site_packages: PathBuf,
}

pub fn wheel() -> Option<Wheel> {
    let venv = std::env::var_os("SBE_TRITON_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo_root().join(".venv-triton"));
    let found = std::fs::read_dir(venv.join("lib"))
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages"))
        .find(|sp| sp.join("pytriton/tritonserver/bin/tritonserver").is_file());
    let Some(sp) = found else {
        if std::env::var_os("CI").is_some() || std::env::var_os("SBE_REQUIRE_TRITON").is_some() {
            panic!(
                "no tritonserver in {} (run scripts/setup-triton.sh)",
                venv.display()
            );
        }
        eprintln!(
            "skipped: no tritonserver in {} (run scripts/setup-triton.sh)",
            venv.display()
        );
        return None;
    };
    let python = sp
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("python"))
        .unwrap_or("3.11")
        .to_string();
    let t = sp.join("pytriton/tritonserver");
    Some(Wheel {
        server: t.join("bin/tritonserver"),
        libs: sp.join("nvidia_pytriton.libs"),
        backends: t.join("backends"),
        stub: t.join(format!(
            "python_backend_stubs/{python}/triton_python_backend_stub"
        )),
        site_packages: sp,
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Writes the python-platform repository for `model_dir` into `out`.
pub fn write_repo(model_dir: &Path, out: &Path, extra: &[&str]) {
    let out = Command::new(super::bin())
        .args(["triton-repo", "--platform", "python", "--model"])
        .arg(model_dir)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run triton-repo");
    assert!(
        out.status.success(),
        "triton-repo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TritonServer {
    /// A server for the model folders `models` (one repository each), ready to answer;
    /// `None` where the wheel is missing. `edit` may change the repositories before the start.
    pub fn start(models: &[&Path], edit: impl FnOnce(&Path)) -> Option<TritonServer> {
        let wheel = wheel()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        for (i, m) in models.iter().enumerate() {
            let one = dir.path().join(format!("r{i}"));
            write_repo(m, &one, &[]);
            for entry in std::fs::read_dir(&one).unwrap() {
                let entry = entry.unwrap();
                std::fs::rename(entry.path(), repo.join(entry.file_name())).unwrap();
            }
        }
        edit(&repo);
        // The python backend with the stub for this Python beside it.
        let backends = dir.path().join("backends");
        std::fs::create_dir_all(backends.join("python")).unwrap();
        for entry in std::fs::read_dir(wheel.backends.join("python")).unwrap() {
            let p = entry.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, backends.join("python").join(p.file_name().unwrap())).unwrap();
            }
        }
        std::fs::copy(
            &wheel.stub,
            backends.join("python/triton_python_backend_stub"),
        )
        .unwrap();
        let grpc_port = free_port();
        let log = dir.path().join("tritonserver.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(&wheel.server);
        command
            .arg(format!("--model-repository={}", repo.display()))
            .arg(format!("--backend-directory={}", backends.display()))
            .arg(format!("--grpc-port={grpc_port}"))
            .args([
                "--allow-http=false",
                "--allow-metrics=false",
                "--log-verbose=0",
            ])
            .env("LD_LIBRARY_PATH", &wheel.libs)
            .env("PYTHONPATH", &wheel.site_packages)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        // SAFETY: prctl is async-signal-safe; the server dies with the thread that started it.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // Its own process group: killing the group also ends the python backend's stub
        // processes, which a SIGKILL of the server alone would leave behind.
        command.process_group(0);
        let child = command.spawn().expect("start tritonserver");
        let mut server = TritonServer {
            child: Some(child),
            url: format!("grpc://127.0.0.1:{grpc_port}"),
            grpc_port,
            repo,
            log,
            _dir: dir,
        };
        server.wait_ready();
        Some(server)
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if self.log_text().contains("Started GRPCInferenceService") {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("tritonserver exited ({status}):\n{}", self.log_text());
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                panic!("tritonserver not ready after 120 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server now (SIGKILL), as a crash or a pulled cable would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) on the process group this server leads (its pid).
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TritonServer {
    fn drop(&mut self) {
        self.kill();
    }
}
