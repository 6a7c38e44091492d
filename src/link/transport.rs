//! Byte transports under the link: a serial port, a pseudo-terminal, an in-process pipe.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Baud rate of `serial:PATH` when the spec names none.
pub const DEFAULT_BAUD: u32 = 921_600;

/// Where the arm controller is: `serial:/dev/ttyACM0@921600`, `pty:PATH`, `sim`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkSpec {
    /// A serial device at a baud rate.
    Serial { path: PathBuf, baud: u32 },
    /// A pseudo-terminal (or a symlink to one) that `arm-sim --link pty:PATH` created.
    Pty { path: PathBuf },
    /// The simulator, in this process.
    Sim,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkSpecError {
    #[error("link spec `{0}` is not one of serial:/dev/ttyACM0@921600, pty:PATH, sim")]
    Unknown(String),
    #[error("link spec `{0}`: the baud rate after `@` is not a positive number (e.g. serial:/dev/ttyACM0@921600)")]
    Baud(String),
    #[error("link spec `{0}` names no device path (e.g. serial:/dev/ttyACM0@921600)")]
    NoPath(String),
}

impl FromStr for LinkSpec {
    type Err = LinkSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "sim" {
            return Ok(LinkSpec::Sim);
        }
        if let Some(rest) = s.strip_prefix("serial:") {
            let (path, baud) = match rest.rsplit_once('@') {
                Some((p, b)) => (
                    p,
                    b.parse::<u32>()
                        .ok()
                        .filter(|b| *b > 0)
                        .ok_or_else(|| LinkSpecError::Baud(s.into()))?,
                ),
                None => (rest, DEFAULT_BAUD),
            };
            if path.is_empty() {
                return Err(LinkSpecError::NoPath(s.into()));
            }
            return Ok(LinkSpec::Serial {
                path: path.into(),
                baud,
            });
        }
        if let Some(path) = s.strip_prefix("pty:") {
            if path.is_empty() {
                return Err(LinkSpecError::NoPath(s.into()));
            }
            return Ok(LinkSpec::Pty { path: path.into() });
        }
        Err(LinkSpecError::Unknown(s.into()))
    }
}

impl std::fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkSpec::Serial { path, baud } => write!(f, "serial:{}@{}", path.display(), baud),
            LinkSpec::Pty { path } => write!(f, "pty:{}", path.display()),
            LinkSpec::Sim => write!(f, "sim"),
        }
    }
}

/// The two halves of an open byte stream. Reads time out (`io::ErrorKind::TimedOut`) so a
/// reader can check for shutdown; a read of 0 bytes means the other end is gone.
pub struct Duplex {
    pub reader: Box<dyn Read + Send>,
    pub writer: Box<dyn Write + Send>,
}

/// Opens a serial device or a pty slave, raw, with `read_timeout`, and drops stale bytes.
pub fn open_serial(
    path: &Path,
    baud: u32,
    read_timeout: Duration,
) -> Result<Duplex, serialport::Error> {
    use serialport::SerialPort;
    let path_str = path.to_string_lossy();
    let mut port = serialport::new(path_str.as_ref(), baud)
        .timeout(read_timeout)
        .open_native()?;
    port.set_exclusive(false)?;
    port.clear(serialport::ClearBuffer::All)?;
    let reader = port.try_clone_native()?;
    Ok(Duplex {
        reader: Box::new(reader),
        writer: Box::new(port),
    })
}

/// A pseudo-terminal whose slave is reachable at a path, as `arm-sim --link pty:PATH` makes.
pub struct PtyEndpoint {
    pub master: serialport::TTYPort,
    /// Held open so the master does not read EIO while no peer has the slave open.
    pub slave: serialport::TTYPort,
    pub slave_name: String,
}

/// Creates a pty pair with a raw slave and points `link` (a new symlink) at it. An existing
/// `link` is replaced only when it is a symlink to a pty slave (`/dev/pts/N`), as an earlier
/// `arm-sim` leaves behind; anything else there is an `io::ErrorKind::AlreadyExists` error
/// naming the path, and nothing is removed.
pub fn create_pty(link: &Path, read_timeout: Duration) -> io::Result<PtyEndpoint> {
    use serialport::SerialPort;
    let stale_link = match link.symlink_metadata() {
        Ok(meta) => {
            let ours = meta.file_type().is_symlink()
                && std::fs::read_link(link).is_ok_and(|t| is_pts_slave(&t));
            if !ours {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} already exists and is not a link to a pseudo-terminal (/dev/pts/N) \
                         that arm-sim made: not replacing it; remove it or choose another path",
                        link.display()
                    ),
                ));
            }
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let (mut master, slave) = serialport::TTYPort::pair().map_err(io::Error::other)?;
    let slave_name = slave
        .name()
        .ok_or_else(|| io::Error::other("the new pty has no slave name"))?;
    make_raw(&slave)?;
    master.set_timeout(read_timeout).map_err(io::Error::other)?;
    if stale_link {
        // Removes the symlink itself, never what it points at.
        std::fs::remove_file(link)?;
    }
    std::os::unix::fs::symlink(&slave_name, link)?;
    Ok(PtyEndpoint {
        master,
        slave,
        slave_name,
    })
}

/// Whether `target` names a pty slave: `/dev/pts/` followed by a number.
fn is_pts_slave(target: &Path) -> bool {
    target.parent() == Some(Path::new("/dev/pts"))
        && target
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn make_raw(port: &serialport::TTYPort) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = port.as_raw_fd();
    // SAFETY: `fd` is an open tty owned by `port` for the duration of these calls, and
    // `termios` is plain data that tcgetattr fills before use.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl PtyEndpoint {
    /// The master side as a duplex stream.
    pub fn duplex(&self) -> io::Result<Duplex> {
        let reader = self.master.try_clone_native().map_err(io::Error::other)?;
        let writer = self.master.try_clone_native().map_err(io::Error::other)?;
        Ok(Duplex {
            reader: Box::new(reader),
            writer: Box::new(writer),
        })
    }
}

/// Two connected in-process duplex streams (for the built-in simulator).
pub fn pipe_pair(read_timeout: Duration) -> (Duplex, Duplex) {
    let (a_to_b, b_to_a) = (Arc::new(Pipe::default()), Arc::new(Pipe::default()));
    let end = |incoming: &Arc<Pipe>, outgoing: &Arc<Pipe>| Duplex {
        reader: Box::new(PipeReader {
            pipe: incoming.clone(),
            pending: Vec::new(),
            pos: 0,
            timeout: read_timeout,
        }),
        writer: Box::new(PipeWriter {
            pipe: outgoing.clone(),
        }),
    };
    (end(&b_to_a, &a_to_b), end(&a_to_b, &b_to_a))
}

/// One direction of an in-process pipe. A mutex and a condition variable rather than a channel:
/// the simulator polls every millisecond, and a channel's receive spins and yields before it
/// sleeps, which cost the loop beside it about a tenth of this machine's two cores.
#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    readable: Condvar,
}

#[derive(Default)]
struct PipeState {
    chunks: VecDeque<Vec<u8>>,
    writer_gone: bool,
    reader_gone: bool,
}

fn poisoned<T>(_: T) -> io::Error {
    io::Error::other("in-process pipe: a thread panicked while holding it")
}

struct PipeReader {
    pipe: Arc<Pipe>,
    pending: Vec<u8>,
    pos: usize,
    timeout: Duration,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.pending.len() {
            let deadline = Instant::now() + self.timeout;
            let mut state = self.pipe.state.lock().map_err(poisoned)?;
            loop {
                if let Some(chunk) = state.chunks.pop_front() {
                    self.pending = chunk;
                    self.pos = 0;
                    break;
                }
                if state.writer_gone {
                    return Ok(0);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                state = self
                    .pipe
                    .readable
                    .wait_timeout(state, left)
                    .map_err(poisoned)?
                    .0;
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        if let Ok(mut state) = self.pipe.state.lock() {
            state.reader_gone = true;
            state.chunks.clear();
        }
    }
}

struct PipeWriter {
    pipe: Arc<Pipe>,
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.pipe.state.lock().map_err(poisoned)?;
        if state.reader_gone {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        state.chunks.push_back(buf.to_vec());
        drop(state);
        self.pipe.readable.notify_one();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        if let Ok(mut state) = self.pipe.state.lock() {
            state.writer_gone = true;
        }
        self.pipe.readable.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_pty_replaces_only_a_link_to_a_pts_slave() {
        let dir = tempfile::tempdir().unwrap();
        let tick = Duration::from_millis(1);
        let file = dir.path().join("file");
        std::fs::write(&file, b"keep me").unwrap();
        let err = create_pty(&file, tick).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains(&file.display().to_string()));
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

        let other = dir.path().join("other");
        std::os::unix::fs::symlink(&file, &other).unwrap();
        let err = create_pty(&other, tick).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_link(&other).unwrap(), file);

        let stale = dir.path().join("stale");
        std::os::unix::fs::symlink("/dev/pts/999999", &stale).unwrap();
        let pty = create_pty(&stale, tick).unwrap();
        assert_eq!(
            std::fs::read_link(&stale).unwrap(),
            Path::new(&pty.slave_name)
        );
        assert!(is_pts_slave(Path::new("/dev/pts/3")));
        assert!(!is_pts_slave(Path::new("/dev/pts/../../etc/passwd")));
        assert!(!is_pts_slave(Path::new("/dev/pts/ptmx")));
    }

    #[test]
    fn the_in_process_pipe_delivers_in_order_times_out_and_reports_either_end_gone() {
        let (host, controller) = pipe_pair(Duration::from_millis(20));
        let (mut host_reader, mut host_writer) = (host.reader, host.writer);
        let (mut ctl_reader, ctl_writer) = (controller.reader, controller.writer);
        let mut buf = [0u8; 3];
        let empty = ctl_reader.read(&mut buf).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::TimedOut);

        let sender = std::thread::spawn(move || {
            for chunk in [&b"abcd"[..], b"ef"] {
                host_writer.write_all(chunk).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            host_writer
        });
        let mut got = Vec::new();
        while got.len() < 6 {
            match ctl_reader.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
            }
        }
        assert_eq!(got, b"abcdef");
        // The writer gone: the reader sees the end of the stream, not a timeout.
        drop(sender.join().unwrap());
        assert_eq!(ctl_reader.read(&mut buf).unwrap(), 0);

        // The reader gone: writing to it fails.
        drop(host_reader.read(&mut buf).unwrap_err());
        drop(host_reader);
        let mut ctl_writer = ctl_writer;
        let err = ctl_writer.write_all(b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
