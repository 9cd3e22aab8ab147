//! cgroup v2 ids to paths, for the trace's cgroup table and `--cgroup`.
//!
//! The kernel side records a task's cgroup v2 id, which is the inode number
//! of its directory under the cgroup v2 mount. Ids mean nothing after the
//! fact, so the recorder notes each id its messages carry (one compare per
//! message: ids come in runs) and, once a second at the flush, resolves the
//! new ones by walking the mount — only when an id is not known yet, and
//! the walk at most once a second — and writes `(id, path)` to the trace.
//! An id whose cgroup is gone before it is resolved is dropped after one
//! fresh walk missed it. `--cgroup` also uses the walk to find a container
//! by id prefix ([`find_container`]).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// How often the mount may be walked for ids not known yet.
const WALK_EVERY: Duration = Duration::from_secs(1);

/// Every cgroup under `root` (the v2 mount): id (inode number) -> path
/// relative to the mount, `/` for the root. Directories that vanish during
/// the walk are skipped.
pub fn walk(root: &Path) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), String::from("/"))];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(md) = std::fs::metadata(&dir) else {
            continue;
        };
        out.insert(md.ino(), rel.clone());
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if rel == "/" {
                format!("/{name}")
            } else {
                format!("{rel}/{name}")
            };
            stack.push((e.path(), child));
        }
    }
    out
}

/// The cgroup ids seen while recording and their paths, resolved off the
/// hot path.
#[derive(Debug, Default)]
pub struct CgroupNames {
    root: Option<std::path::PathBuf>,
    known: HashMap<u64, String>,
    seen: HashSet<u64>,
    pending: Vec<u64>,
    last: u64,
    last_walk: Option<Instant>,
}

impl CgroupNames {
    /// Names resolved under the cgroup v2 mount (none if it is not found).
    pub fn new() -> CgroupNames {
        CgroupNames {
            root: crate::kernel::cgroup2_root().ok().map(Into::into),
            ..CgroupNames::default()
        }
    }

    /// Note that a message carried cgroup `id` (0: none).
    #[inline]
    pub fn see(&mut self, id: u64) {
        if id != self.last {
            self.last = id;
            if id != 0 && self.seen.insert(id) {
                self.pending.push(id);
            }
        }
    }

    /// The ids noted since the last call that can be named now, with their
    /// paths. Walks the mount when one is not known yet, at most once a
    /// second unless `force` (the end of the recording).
    pub fn resolve(&mut self, force: bool) -> Vec<(u64, String)> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let Some(root) = &self.root else {
            self.pending.clear();
            return Vec::new();
        };
        let mut walked = false;
        if self.pending.iter().any(|id| !self.known.contains_key(id))
            && (force || self.last_walk.is_none_or(|t| t.elapsed() >= WALK_EVERY))
        {
            self.known = walk(root);
            self.last_walk = Some(Instant::now());
            walked = true;
        }
        let mut out = Vec::new();
        let known = &self.known;
        self.pending.retain(|id| match known.get(id) {
            Some(p) => {
                out.push((*id, p.clone()));
                false
            }
            // Gone before a fresh walk could see it: give up on it.
            None => !walked,
        });
        out.sort_unstable();
        out
    }
}

/// The cgroup (id, path) of the container whose id starts with `prefix`
/// (docker, containerd/CRI, CRI-O, podman naming; see
/// `snoop_format::cgroup`), or of the systemd unit named `prefix`. Exactly
/// one container must match; a container's scope and its cgroups below
/// (as runtimes nest them) count once, by the outermost.
pub fn find_container(prefix: &str) -> Result<(u64, String)> {
    if prefix.is_empty() {
        bail!("empty container id");
    }
    let root = crate::kernel::cgroup2_root()?;
    let mut hits: Vec<(u64, String, String)> = walk(Path::new(&root))
        .into_iter()
        .filter_map(|(id, path)| {
            let c = snoop_format::cgroup::container(&path)?;
            (c.id.starts_with(prefix) || c.name() == prefix).then(|| (id, path, c.name()))
        })
        .collect();
    // The outermost cgroup of each container.
    hits.sort_by(|a, b| a.1.len().cmp(&b.1.len()).then(a.1.cmp(&b.1)));
    let mut seen: Vec<(u64, String, String)> = Vec::new();
    for h in hits {
        if !seen.iter().any(|s| s.2 == h.2) {
            seen.push(h);
        }
    }
    match seen.len() {
        0 => {
            bail!("no cgroup path {prefix:?} and no container or service matching it under {root}")
        }
        1 => {
            let (id, path, _) = seen.remove(0);
            Ok((id, path))
        }
        n => bail!(
            "container id prefix {prefix:?} matches {n} containers ({}); give more of it",
            seen.iter()
                .map(|s| s.2.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_one_id_are_noted_once() {
        let mut c = CgroupNames::default();
        for id in [5, 5, 5, 0, 7, 5, 7] {
            c.see(id);
        }
        assert_eq!(c.pending, vec![5, 7]);
    }

    #[test]
    fn walk_names_directories_by_inode() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("a/b")).expect("mkdir");
        let m = walk(d.path());
        let ino = |p: &Path| std::fs::metadata(p).expect("md").ino();
        assert_eq!(m[&ino(d.path())], "/");
        assert_eq!(m[&ino(&d.path().join("a/b"))], "/a/b");
        assert_eq!(m.len(), 3);
    }
}
