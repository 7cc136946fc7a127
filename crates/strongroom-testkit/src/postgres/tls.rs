//! TLS test clusters: a throwaway CA, the server's certificate for `localhost`, and client
//! certificates, made with the `openssl` command; a server that refuses TCP without TLS.

use super::{Cluster, chown_to, sh_quote};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the `openssl` command, panicking with its stderr when it fails.
fn openssl(args: &[&std::ffi::OsStr]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command is needed for TLS test clusters (apt install openssl)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a key and a certificate for `cn`, signed by the CA in `dir` (`root.crt`, `ca.key`).
fn sign(dir: &Path, cn: &str, ext: &Path, key: &Path, crt: &Path, csr: &Path) {
    let o = |s: &'static str| std::ffi::OsStr::new(s);
    let subj = format!("/CN={cn}");
    let (ca_crt, ca_key) = (dir.join("root.crt"), dir.join("ca.key"));
    openssl(&[
        o("req"),
        o("-newkey"),
        o("rsa:2048"),
        o("-nodes"),
        o("-subj"),
        subj.as_ref(),
        o("-keyout"),
        key.as_os_str(),
        o("-out"),
        csr.as_os_str(),
    ]);
    openssl(&[
        o("x509"),
        o("-req"),
        o("-in"),
        csr.as_os_str(),
        o("-CA"),
        ca_crt.as_os_str(),
        o("-CAkey"),
        ca_key.as_os_str(),
        o("-CAcreateserial"),
        o("-days"),
        o("2"),
        o("-extfile"),
        ext.as_os_str(),
        o("-out"),
        crt.as_os_str(),
    ]);
}

impl Cluster {
    /// Makes the certificates of a TLS cluster and refuses TCP sessions without TLS; the TLS
    /// settings go on the command line, as they name files outside the data directory.
    pub(super) fn make_tls(&mut self) {
        // A test CA signs the server's certificate: verify-full needs a real chain
        // (rustls, unlike libpq, refuses a self-signed CA certificate as the server's).
        let data = self.data.clone();
        let (crt, key) = (data.join("server.crt"), data.join("server.key"));
        let d = self.dir.path();
        let (ca_crt, ca_key, csr, ext) = (
            d.join("root.crt"),
            d.join("ca.key"),
            d.join("server.csr"),
            d.join("ext.cnf"),
        );
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let o = |s: &'static str| std::ffi::OsStr::new(s);
        openssl(&[
            o("req"),
            o("-x509"),
            o("-newkey"),
            o("rsa:2048"),
            o("-nodes"),
            o("-days"),
            o("2"),
            o("-subj"),
            o("/CN=strongroom test CA"),
            o("-keyout"),
            ca_key.as_os_str(),
            o("-out"),
            ca_crt.as_os_str(),
        ]);
        sign(d, "localhost", &ext, &key, &crt, &csr);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Some(u) = &self.run_as {
            chown_to(&key, u);
            chown_to(&crt, u);
        }
        let hba = data.join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("hostnossl all all all reject\n{old}")).unwrap();
        let ca = self.certificate();
        self.opts.push_str(&format!(
            " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c {}",
            sh_quote(&format!("ssl_ca_file={}", ca.display()))
        ));
    }

    /// The certificate of the CA that signed the server's (PEM), for clusters from
    /// [`Cluster::start_tls`]: what `sslrootcert` should name.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("root.crt")
    }

    /// For clusters from [`Cluster::start_tls`]: a client certificate and key (PEM) for
    /// `role`, signed by the cluster's CA, and `role` made to log in with it only
    /// (`hostssl … cert`), as services that hand out client certificates do.
    pub fn client_certificate(&self, role: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.path();
        let (crt, key, csr, ext) = (
            d.join(format!("{role}.crt")),
            d.join(format!("{role}.key")),
            d.join(format!("{role}.csr")),
            d.join("client-ext.cnf"),
        );
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        sign(d, role, &ext, &key, &crt, &csr);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let hba = self.data_dir().join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("hostssl all {role} all cert\n{old}")).unwrap();
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data_dir().as_os_str(),
                "reload".as_ref(),
            ],
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        (crt, key)
    }
}
