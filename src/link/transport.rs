//! Byte transports under the link: a serial port, a pseudo-terminal, an in-process pipe.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

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

/// Creates a pty pair with a raw slave and points `link` (a symlink, replaced if present) at it.
pub fn create_pty(link: &Path, read_timeout: Duration) -> io::Result<PtyEndpoint> {
    use serialport::SerialPort;
    let (mut master, slave) = serialport::TTYPort::pair().map_err(io::Error::other)?;
    let slave_name = slave
        .name()
        .ok_or_else(|| io::Error::other("the new pty has no slave name"))?;
    make_raw(&slave)?;
    master.set_timeout(read_timeout).map_err(io::Error::other)?;
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link)?;
    }
    std::os::unix::fs::symlink(&slave_name, link)?;
    Ok(PtyEndpoint {
        master,
        slave,
        slave_name,
    })
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
    let (a_tx, a_rx) = crossbeam_channel::unbounded();
    let (b_tx, b_rx) = crossbeam_channel::unbounded();
    let a = Duplex {
        reader: Box::new(PipeReader {
            rx: b_rx,
            pending: Vec::new(),
            pos: 0,
            timeout: read_timeout,
        }),
        writer: Box::new(PipeWriter { tx: a_tx }),
    };
    let b = Duplex {
        reader: Box::new(PipeReader {
            rx: a_rx,
            pending: Vec::new(),
            pos: 0,
            timeout: read_timeout,
        }),
        writer: Box::new(PipeWriter { tx: b_tx }),
    };
    (a, b)
}

struct PipeReader {
    rx: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    pos: usize,
    timeout: Duration,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.pending.len() {
            match self.rx.recv_timeout(self.timeout) {
                Ok(chunk) => {
                    self.pending = chunk;
                    self.pos = 0;
                }
                Err(RecvTimeoutError::Timeout) => return Err(io::ErrorKind::TimedOut.into()),
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

struct PipeWriter {
    tx: Sender<Vec<u8>>,
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .send(buf.to_vec())
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
