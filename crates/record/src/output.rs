//! Creating the trace file safely: never through a symlink, never over an
//! existing file unless asked, mode 0600, and owned by the invoking user
//! when run under sudo so `snoop analyze` works without root.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Open `path` for writing a new trace.
pub fn create_output(path: &Path, force: bool) -> Result<File> {
    let mut o = OpenOptions::new();
    o.write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if force {
        if let Ok(md) = std::fs::symlink_metadata(path) {
            if md.file_type().is_symlink() {
                bail!(
                    "{} is a symlink; refusing to write through it",
                    path.display()
                );
            }
            if !md.file_type().is_file() {
                bail!("{} exists and is not a regular file", path.display());
            }
        }
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let f = o.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            anyhow::anyhow!(
                "{} already exists (use --force to overwrite)",
                path.display()
            )
        }
        _ if e.raw_os_error() == Some(libc::ELOOP) => {
            anyhow::anyhow!(
                "{} is a symlink; refusing to write through it",
                path.display()
            )
        }
        _ => anyhow::Error::new(e).context(format!("create {}", path.display())),
    })?;
    // An existing file truncated with --force keeps its old mode; fix it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    give_to_sudo_user(&f).with_context(|| format!("chown {}", path.display()))?;
    Ok(f)
}

/// fchown to SUDO_UID/SUDO_GID when both are set and parse.
fn give_to_sudo_user(f: &File) -> Result<()> {
    use std::os::fd::AsRawFd;
    let uid = std::env::var("SUDO_UID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok());
    let gid = std::env::var("SUDO_GID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok());
    if let (Some(uid), Some(gid)) = (uid, gid) {
        // SAFETY: fchown on a descriptor we own.
        let rc = unsafe { libc::fchown(f.as_raw_fd(), uid, gid) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_existing_and_symlinks() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("t.snp");
        create_output(&p, false).expect("create");
        let mode = std::fs::metadata(&p).expect("md").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = create_output(&p, false).expect_err("exists");
        assert!(e.to_string().contains("already exists"), "{e}");
        create_output(&p, true).expect("force");
        let l = d.path().join("link.snp");
        std::os::unix::fs::symlink(&p, &l).expect("symlink");
        assert!(create_output(&l, true).is_err());
        assert!(create_output(&l, false).is_err());
    }
}
