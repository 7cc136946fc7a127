//! Encrypting an exported file to a person's key: an age X25519 recipient (`age1…`,
//! encrypted in this process by the `age` crate) or an OpenPGP key of the local GnuPG
//! keyring (`gpg --encrypt`, a child process the plaintext streams through).
//!
//! Owns reading and checking a recipient before any work starts, and the writer that turns
//! plaintext into the file's bytes: with a recipient, nothing but ciphertext ever reaches
//! the file (age seals 64 KiB chunks in memory; gpg reads the plaintext from a pipe and
//! writes to the file itself). Must not decide where files go or what they hold (the export
//! job's, `crate::jobs::export`), and is not the repository's own encryption (`crypto`:
//! AEAD under the master key, for objects in the store).
//!
//! Why gpg as a child rather than an OpenPGP library: a GnuPG recipient is a key *in the
//! operator's keyring*, chosen by the keyring's own rules (ids, fingerprints, trust,
//! expiry); only gpg reads that keyring as gpg does. It runs with `--batch` and
//! `--auto-key-locate clear,local` (never a key fetched from the network), keeps the
//! environment GnuPG reads (`GNUPGHOME`, `HOME`, the agent's) and loses the repository's and
//! the stores' secrets and `PGPASSWORD` (`crate::process`). Its trust decisions stand: a key
//! it will not encrypt to (untrusted, expired) is refused, with gpg's own words. Why age in
//! process: no program to install, and its format is small and fixed.

use crate::error::{Error, Result};
use crate::process::{ChildGuard, collect_stderr, describe_exit, stderr_gist};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

/// Bytes buffered before the file (or gpg's pipe) is written.
const BUFFER: usize = 1 << 20;

/// Whom an exported file is encrypted to.
#[derive(Clone)]
pub enum Recipient {
    /// An age X25519 recipient.
    Age(Box<age::x25519::Recipient>),
    /// A key of the local GnuPG keyring: a fingerprint, key id or user id, as gpg takes it.
    Gpg(String),
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Recipient {
    /// An age X25519 recipient (`age1…`); refuses anything else (an identity, an SSH key, a
    /// typo) with a sentence saying what is expected.
    pub fn age(key: &str) -> Result<Recipient> {
        let key = key.trim();
        if key.starts_with("AGE-SECRET-KEY-") {
            return Err(Error::Recipient(
                "that is an age identity (a secret key), not a recipient: give its public key, age1… (age-keygen -y FILE prints it), and keep the secret key away from this host".into(),
            ));
        }
        age::x25519::Recipient::from_str(key)
            .map(|r| Recipient::Age(Box::new(r)))
            .map_err(|why| {
                Error::Recipient(format!(
                    "{key:?} is not an age X25519 recipient ({why}): give a public key like age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
                ))
            })
    }

    /// A GnuPG key `id`, checked by encrypting nothing to it: refused, in gpg's words, when
    /// gpg is missing or will not encrypt to that key (not in the keyring, not trusted,
    /// expired, no encryption subkey).
    pub fn gpg(id: &str) -> Result<Recipient> {
        let id = id.trim();
        if id.is_empty() || id.starts_with('-') {
            return Err(Error::Recipient(format!(
                "{id:?} is not a GnuPG key: give a fingerprint, key id or user id of a key in the keyring"
            )));
        }
        let out = gpg_command(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| {
                Error::Recipient(format!(
                    "could not start gpg ({e}); install GnuPG to encrypt to an OpenPGP key"
                ))
            })?;
        if !out.status.success() {
            return Err(Error::Recipient(format!(
                "gpg cannot encrypt to {id:?} ({}): {}; import the public key (gpg --import) and make it valid (gpg --lsign-key), or check the id with gpg --list-keys",
                describe_exit(out.status),
                stderr_gist(&out.stderr)
            )));
        }
        Ok(Recipient::Gpg(id.to_string()))
    }

    /// The recipient, for reports: `age age1…` or `gpg ID`.
    pub fn describe(&self) -> String {
        match self {
            Recipient::Age(r) => format!("age {r}"),
            Recipient::Gpg(id) => format!("gpg {id}"),
        }
    }

    /// `age` or `gpg`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Recipient::Age(_) => "age",
            Recipient::Gpg(_) => "gpg",
        }
    }
}

/// `gpg` encrypting standard input to `id` on standard output.
fn gpg_command(id: &str) -> Command {
    let mut cmd = Command::new("gpg");
    cmd.args([
        "--batch",
        "--no-tty",
        "--quiet",
        "--auto-key-locate",
        "clear,local",
        "--encrypt",
        "--recipient",
        id,
        "--output",
        "-",
    ]);
    crate::process::withhold_store_secrets(&mut cmd).env_remove("PGPASSWORD");
    cmd
}

/// A file being written: plaintext in, the file's bytes (ciphertext when a recipient was
/// given) out. [`Sealed::finish`] must be called: without it an encrypted file is cut short.
pub struct Sealed {
    inner: Inner,
    /// The file, for messages.
    shown: PathBuf,
}

enum Inner {
    Plain(BufWriter<File>),
    Age(age::stream::StreamWriter<BufWriter<File>>),
    Gpg {
        stdin: Option<BufWriter<std::process::ChildStdin>>,
        child: ChildGuard,
        stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
        file: File,
    },
}

/// Writes into `file` (named `shown` in messages), encrypted to `recipient` when one is given.
pub fn seal(recipient: Option<&Recipient>, file: File, shown: &Path) -> Result<Sealed> {
    let inner = match recipient {
        None => Inner::Plain(BufWriter::with_capacity(BUFFER, file)),
        Some(Recipient::Age(r)) => {
            let encryptor =
                age::Encryptor::with_recipients(std::iter::once(r.as_ref() as &dyn age::Recipient))
                    .map_err(|e| Error::Recipient(format!("age cannot encrypt to {r}: {e}")))?;
            let out = encryptor
                .wrap_output(BufWriter::with_capacity(BUFFER, file))
                .map_err(|e| Error::io("writing", shown, e))?;
            Inner::Age(out)
        }
        Some(Recipient::Gpg(id)) => {
            let to = file
                .try_clone()
                .map_err(|e| Error::io("opening", shown, e))?;
            let mut child = gpg_command(id)
                .stdin(Stdio::piped())
                .stdout(Stdio::from(to))
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| {
                    Error::Recipient(format!(
                        "could not start gpg ({e}); install GnuPG to encrypt to an OpenPGP key"
                    ))
                })?;
            let stderr = collect_stderr(&mut child);
            let stdin = child.stdin.take().expect("stdin piped");
            Inner::Gpg {
                stdin: Some(BufWriter::with_capacity(BUFFER, stdin)),
                child: ChildGuard::new(child),
                stderr: Some(stderr),
                file,
            }
        }
    };
    Ok(Sealed {
        inner,
        shown: shown.to_path_buf(),
    })
}

impl Sealed {
    /// Completes the file (age's last chunk, gpg's exit) and returns it, unsynced.
    pub fn finish(self) -> Result<File> {
        let shown = self.shown;
        match self.inner {
            Inner::Plain(w) => w
                .into_inner()
                .map_err(|e| Error::io("writing", &shown, e.into_error())),
            Inner::Age(w) => w
                .finish()
                .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                .map_err(|e| Error::io("writing", &shown, e)),
            Inner::Gpg {
                mut stdin,
                mut child,
                mut stderr,
                file,
            } => {
                let flushed = stdin.take().map(|mut s| s.flush()).unwrap_or(Ok(()));
                // Closing its input ends gpg's work.
                let status = child.wait();
                let said = stderr
                    .take()
                    .and_then(|h| h.join().ok())
                    .unwrap_or_default();
                let failed =
                    |detail: String| Error::io("encrypting", &shown, std::io::Error::other(detail));
                match status {
                    Ok(s) if s.success() => {
                        flushed.map_err(|e| Error::io("encrypting", &shown, e))?;
                        Ok(file)
                    }
                    Ok(s) => Err(failed(format!(
                        "gpg {}: {}",
                        describe_exit(s),
                        stderr_gist(&said)
                    ))),
                    Err(e) => Err(failed(format!("waiting for gpg: {e}"))),
                }
            }
        }
    }

    /// Why gpg stopped taking input, when it did (it exited: a full disk, a killed gpg).
    fn gpg_gist(&mut self) -> Option<String> {
        let Inner::Gpg {
            stdin,
            child,
            stderr,
            ..
        } = &mut self.inner
        else {
            return None;
        };
        stdin.take();
        let status = child.wait().ok()?;
        let said = stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Some(format!(
            "gpg {}: {}",
            describe_exit(status),
            stderr_gist(&said)
        ))
    }
}

impl Write for Sealed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let res = match &mut self.inner {
            Inner::Plain(w) => w.write(buf),
            Inner::Age(w) => w.write(buf),
            Inner::Gpg { stdin: Some(w), .. } => w.write(buf),
            Inner::Gpg { stdin: None, .. } => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        match res {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                // gpg exited: its own words say why.
                Err(match self.gpg_gist() {
                    Some(gist) => std::io::Error::other(gist),
                    None => e,
                })
            }
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            Inner::Plain(w) => w.flush(),
            Inner::Age(w) => w.flush(),
            Inner::Gpg { stdin: Some(w), .. } => w.flush(),
            Inner::Gpg { stdin: None, .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_recipients_are_checked_and_identities_refused() {
        let ok = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        assert_eq!(Recipient::age(ok).unwrap().describe(), format!("age {ok}"));
        for bad in ["age1nope", "", "ssh-ed25519 AAAA", "bob@example.com"] {
            let e = Recipient::age(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::BadInput, "{bad}: {e}");
            assert!(e.to_string().contains("not an age X25519 recipient"), "{e}");
        }
        let e = Recipient::age("AGE-SECRET-KEY-1QQQQ").unwrap_err();
        assert!(e.to_string().contains("not a recipient"), "{e}");
        assert!(
            !e.to_string().contains("QQQQ"),
            "a secret is never repeated: {e}"
        );
    }

    #[test]
    fn plain_and_age_output_reach_the_file_only_when_finished_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = File::create(&path).unwrap();
        let mut s = seal(None, file, &path).unwrap();
        s.write_all(b"hello").unwrap();
        s.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");

        let identity = age::x25519::Identity::generate();
        let r = Recipient::Age(Box::new(identity.to_public()));
        let file = File::create(&path).unwrap();
        let mut s = seal(Some(&r), file, &path).unwrap();
        let data = vec![7u8; 200_000];
        s.write_all(&data).unwrap();
        s.finish().unwrap();
        let sealed = std::fs::read(&path).unwrap();
        assert!(
            !sealed.windows(64).any(|w| w == &data[..64]),
            "no plaintext"
        );
        let back = age::decrypt(&identity, &sealed).unwrap();
        assert_eq!(back, data);
    }
}
