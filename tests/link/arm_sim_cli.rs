//! `arm-sim` as a process: `--link pty:PATH` replaces only a symlink to a pty slave that an
//! earlier arm-sim left at PATH (any other file there is bad input: exit 2, PATH named, left
//! untouched); `--fault-after-applied` / `--estop-after-applied` make the controller fault.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support;
use crate::support::link::{bin, wait_with_timeout};
use spatialbot_edge::exit;

fn arm_sim(path: &std::path::Path) -> std::process::Output {
    let mut child = Command::new(bin())
        .arg("arm-sim")
        .arg("--link")
        .arg(format!("pty:{}", path.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_with_timeout(&mut child, Duration::from_secs(20));
    child.wait_with_output().unwrap()
}

#[test]
fn arm_sim_refuses_to_replace_a_regular_file_or_a_foreign_symlink_at_its_pty_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"do not delete").unwrap();
    let out = arm_sim(&file);
    assert_eq!(out.status.code(), Some(i32::from(exit::BAD_INPUT)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"do not delete");

    let link = dir.path().join("arm");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let out = arm_sim(&link);
    assert_eq!(out.status.code(), Some(i32::from(exit::BAD_INPUT)));
    assert_eq!(std::fs::read_link(&link).unwrap(), file);
}

#[test]
fn arm_sim_replaces_a_stale_link_to_a_pty_slave() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("arm");
    std::os::unix::fs::symlink("/dev/pts/999999", &link).unwrap();
    let mut child = Command::new(bin())
        .args(["arm-sim", "--json", "--link"])
        .arg(format!("pty:{}", link.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("ready"), "arm-sim said {line:?}");
    let target = std::fs::read_link(&link).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_ne!(target, std::path::Path::new("/dev/pts/999999"));
    assert!(target.starts_with("/dev/pts"), "{}", target.display());
}

/// A host end on the pty made by `arm-sim`: raw frames out, decoded messages in.
struct RawHost {
    duplex: spatialbot_edge::link::transport::Duplex,
    decoder: spatialbot_link::Decoder,
}

impl RawHost {
    fn open(link: &std::path::Path) -> Self {
        let duplex =
            spatialbot_edge::link::transport::open_serial(link, 921_600, Duration::from_millis(5))
                .unwrap();
        Self {
            duplex,
            decoder: spatialbot_link::Decoder::new(),
        }
    }
    fn send(&mut self, m: &spatialbot_link::Message) {
        use std::io::Write;
        let mut buf = [0u8; spatialbot_link::MAX_FRAME];
        let n = spatialbot_link::encode(m, &mut buf).unwrap();
        self.duplex.writer.write_all(&buf[..n]).unwrap();
    }
    /// Messages until `done` says so (periodic Status included), within 5 s.
    fn until(
        &mut self,
        mut done: impl FnMut(&spatialbot_link::Message) -> bool,
    ) -> Vec<spatialbot_link::Message> {
        use std::io::Read;
        let t0 = std::time::Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while t0.elapsed() < Duration::from_secs(5) {
            // A read timeout (nothing yet) counts as no bytes.
            let n: usize = self.duplex.reader.read(&mut buf).unwrap_or_default();
            for &b in &buf[..n] {
                if let Some(Ok(m)) = self.decoder.push(b) {
                    let stop = done(&m);
                    got.push(m);
                    if stop {
                        return got;
                    }
                }
            }
        }
        panic!("no expected message within 5 s; got {got:?}");
    }
}

fn hello(session: u32) -> spatialbot_link::Message {
    spatialbot_link::Message::Hello(spatialbot_link::Hello {
        protocol: 1,
        session,
        layout: spatialbot_link::DEFAULT_LAYOUT,
        min: [-1.0; 8],
        max: [1.0; 8],
        max_step: [2.0; 8],
        watchdog_ms: 1000,
    })
}

fn action(seq: u32) -> spatialbot_link::Message {
    spatialbot_link::Message::Action(spatialbot_link::Action {
        seq,
        chunk_id: 0,
        chunk_index: 0,
        capture_us: 0,
        send_us: 0,
        values: [0.0; 8],
    })
}

/// Two actions applied, then the injected local fault: `Fault{code}` + `Status{Faulted}`;
/// afterwards an Action is Held and a Hello refused with the same Fault.
fn local_fault_after_two_actions(flag: &str, code: spatialbot_link::FaultCode) -> u32 {
    use spatialbot_link::{Ack, AckOf, ControllerState, Fault, HelloAck, Message, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let (mut child, link, _log) = support::link::spawn_arm_sim(dir.path(), &[flag, "2"]);
    let mut host = RawHost::open(&link);
    host.send(&hello(77));
    host.until(|m| matches!(m, Message::HelloAck(HelloAck { accepted: true, .. })));
    host.send(&action(1));
    host.send(&action(2));
    let got =
        host.until(|m| matches!(m, Message::Status(s) if s.state == ControllerState::Faulted));
    let fault_at = got
        .iter()
        .position(|m| *m == Message::Fault(Fault { code, detail: 0 }))
        .expect("the local fault");
    let Message::Status(status) = got[got.len() - 1] else {
        unreachable!()
    };
    assert_eq!(fault_at, got.len() - 2, "Fault then Status: {got:?}");
    assert_eq!(status.last_seq, 2);
    host.send(&action(3));
    let got = host.until(|m| matches!(m, Message::Ack(_)));
    assert_eq!(
        got.last(),
        Some(&Message::Ack(Ack {
            of: AckOf::Action,
            seq: 3,
            outcome: Outcome::Held
        }))
    );
    host.send(&hello(78));
    let got = host.until(|m| matches!(m, Message::HelloAck(_)));
    assert_eq!(
        got[got.len() - 2..],
        [
            Message::Fault(Fault { code, detail: 0 }),
            Message::HelloAck(HelloAck {
                protocol: 1,
                session: 78,
                accepted: false
            })
        ]
    );
    child.kill().unwrap();
    child.wait().unwrap();
    status.faults
}

#[test]
fn arm_sim_fault_after_applied_raises_a_hardware_fault_after_n_actions() {
    let faults = local_fault_after_two_actions(
        "--fault-after-applied",
        spatialbot_link::FaultCode::Hardware,
    );
    assert_eq!(faults & spatialbot_link::fault_bits::ESTOP, 0);
}

#[test]
fn arm_sim_estop_after_applied_raises_the_estop_input_after_n_actions() {
    let faults =
        local_fault_after_two_actions("--estop-after-applied", spatialbot_link::FaultCode::Estop);
    assert_eq!(
        faults & spatialbot_link::fault_bits::ESTOP,
        spatialbot_link::fault_bits::ESTOP
    );
}

#[test]
fn arm_sim_help_documents_the_fault_injection_flags() {
    let out = Command::new(bin())
        .args(["arm-sim", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--fault-after-applied"), "{help}");
    assert!(help.contains("--estop-after-applied"), "{help}");
}
