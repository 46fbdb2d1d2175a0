//! Dependencies a test can stop and start again on the same port: a private
//! PostgreSQL cluster (initdb in a temporary directory, pg_ctl) and a private
//! redis-server. scripts/test exports where their programs are
//! (`ADMIT_TEST_PG_BINDIR`, `ADMIT_TEST_REDIS_SERVER`) and installs them when missing.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe {
        libc::geteuid() == 0
    }
}

/// Waits until something accepts connections on 127.0.0.1:`port` (or `timeout`).
fn wait_listening(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The directory of initdb and pg_ctl: `ADMIT_TEST_PG_BINDIR`, else the newest
/// /usr/lib/postgresql/*/bin.
fn pg_bindir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("ADMIT_TEST_PG_BINDIR") {
        return Ok(PathBuf::from(d));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d).context(
        "no PostgreSQL server programs (initdb, pg_ctl) found: set ADMIT_TEST_PG_BINDIR or \
         apt-get install postgresql (scripts/test does)",
    )
}

/// A PostgreSQL cluster of its own, owned by the `postgres` OS user when the tests
/// run as root (initdb refuses root). Stopped and removed when dropped.
pub struct PrivatePostgres {
    bindir: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    /// A superuser URL (`…/postgres`), for [`crate::TestDatabase::postgres_on`].
    pub admin_url: String,
}

impl PrivatePostgres {
    pub fn start() -> anyhow::Result<Self> {
        let bindir = pg_bindir()?;
        let dir = tempfile::Builder::new()
            .prefix("admit-outage-pg.")
            .tempdir()?;
        if is_root() {
            let ok = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()?
                .success();
            anyhow::ensure!(
                ok,
                "cannot give {} to the postgres user",
                dir.path().display()
            );
        }
        let data = dir.path().join("data");
        let out = pg_command(&bindir, "initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .context("running initdb")?;
        anyhow::ensure!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = crate::free_port();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n",
            dir.path().display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text)?;
        let pg = Self {
            bindir,
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            dir,
        };
        pg.up()?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the stopped cluster again, on the same port.
    pub fn up(&self) -> anyhow::Result<()> {
        let out = pg_command(&self.bindir, "pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .output()?;
        if !out.status.success() || !wait_listening(self.port, Duration::from_secs(30)) {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            bail!(
                "a private PostgreSQL on port {} did not start: {log}",
                self.port
            );
        }
        Ok(())
    }

    /// Stops the cluster (`pg_ctl stop -m fast`: sessions are cut, as in an outage).
    pub fn down(&self) -> anyhow::Result<()> {
        let out = pg_command(&self.bindir, "pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

fn pg_command(bindir: &Path, program: &str) -> Command {
    let path = bindir.join(program);
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    };
    c.stdin(Stdio::null());
    c
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let _ = pg_command(&self.bindir, "pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "-t", "30", "stop"])
                .output();
        }
    }
}

/// A redis-server of its own with an append-only file, so what the stream held
/// survives a stop and start, as with a production Redis. Stopped when dropped.
pub struct PrivateRedis {
    dir: tempfile::TempDir,
    pub port: u16,
    pub url: String,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> anyhow::Result<Self> {
        let port = crate::free_port();
        let mut r = Self {
            dir: tempfile::Builder::new()
                .prefix("admit-outage-redis.")
                .tempdir()?,
            port,
            url: format!("redis://127.0.0.1:{port}"),
            child: None,
        };
        r.up()?;
        Ok(r)
    }

    /// Starts the server again, on the same port and with the same data.
    pub fn up(&mut self) -> anyhow::Result<()> {
        let program =
            std::env::var("ADMIT_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let port = self.port.to_string();
        let child = Command::new(&program)
            .args(["--bind", "127.0.0.1", "--port", &port, "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {program} (set ADMIT_TEST_REDIS_SERVER, or apt-get install redis-server)")
            })?;
        self.child = Some(child);
        anyhow::ensure!(
            wait_listening(self.port, Duration::from_secs(20)),
            "a private Redis did not start on port {}",
            self.port
        );
        Ok(())
    }

    /// SIGTERM (Redis writes its append-only file and exits), then waits.
    pub fn down(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            #[allow(unsafe_code)]
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("the private Redis did not stop on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
