//! The binary on a real terminal: a pseudo-terminal whose other end the test reads and
//! types into, as a person at a terminal would (password prompts, help at a given width).
//!
//! The child gets the terminal as stdin, stdout, stderr and controlling terminal (so
//! `/dev/tty` opens, and Ctrl-C typed there signals it). Reading waits for what is expected
//! or for the child to close the terminal; a child that neither answers nor exits is killed
//! after [`GIVE_UP`], so a regression fails the test instead of hanging it (no assertion
//! depends on that time).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a child may keep the test waiting before it is killed.
pub const GIVE_UP: Duration = Duration::from_secs(300);

/// A child process on a pseudo-terminal.
pub struct Pty {
    master: File,
    child: Arc<Mutex<Child>>,
    /// Everything read from the terminal so far (`\r\n` as `\n`).
    pub output: String,
}

impl Pty {
    /// Starts `cmd` on a new terminal `cols` columns wide.
    pub fn spawn(cmd: Command, cols: u16) -> Pty {
        Pty::spawn_with(cmd, cols, true)
    }

    /// Starts `cmd` on a new terminal, its stdin the terminal too when `stdin`, else empty.
    pub fn spawn_with(mut cmd: Command, cols: u16, stdin: bool) -> Pty {
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize {
            ws_row: 40,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors we then own; the name buffer and termios
        // are optional (null).
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned by nobody else.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        // SAFETY: fcntl on a descriptor we own; the child must not inherit the master.
        unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        cmd.stdin(if stdin {
            Stdio::from(slave.try_clone().unwrap())
        } else {
            Stdio::null()
        })
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec: a new session, whose
        // controlling terminal is this one (stdout).
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(1, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = Arc::new(Mutex::new(cmd.spawn().unwrap()));
        // The slave's descriptors close with `cmd`: once the child and its children are
        // gone, reading the master ends.
        drop(cmd);
        let watched = Arc::downgrade(&child);
        std::thread::spawn(move || {
            std::thread::sleep(GIVE_UP);
            if let Some(c) = watched.upgrade() {
                let _ = c.lock().unwrap().kill();
            }
        });
        Pty {
            master,
            child,
            output: String::new(),
        }
    }

    /// Reads once; false at the end (the child closed the terminal).
    fn read_some(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        match self.master.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.output
                    .push_str(&String::from_utf8_lossy(&buf[..n]).replace("\r\n", "\n"));
                true
            }
            // Linux: EIO once no one holds the terminal's other end.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
            Err(e) => panic!("reading the terminal: {e}"),
        }
    }

    /// Reads until the output (since `from`) holds `needle`; the output from `from` on.
    pub fn read_until(&mut self, from: usize, needle: &str) -> String {
        while !self.output[from..].contains(needle) {
            assert!(
                self.read_some(),
                "the terminal closed before {needle:?} appeared:\n{}",
                self.output
            );
        }
        self.output[from..].to_string()
    }

    /// Types `text` at the terminal.
    pub fn type_in(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// The terminal's local modes (`c_lflag`: ECHO, ICANON, …) as the child left them.
    pub fn local_modes(&self) -> libc::tcflag_t {
        // SAFETY: tcgetattr fills a termios we own; on Linux the master reports the
        // terminal's settings.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(self.master.as_raw_fd(), &mut t), 0);
            t.c_lflag
        }
    }

    /// Reads to the end (all it wrote is then in [`Pty::output`]) and waits for the child.
    pub fn finish(&mut self) -> ExitStatus {
        while self.read_some() {}
        self.child.lock().unwrap().wait().unwrap()
    }
}
