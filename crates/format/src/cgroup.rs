//! What a cgroup v2 path says about the container or service its processes
//! run in. Container runtimes and systemd name cgroups after what runs in
//! them; the trace keeps the paths (format 1.2), and this module reads
//! those names so reports can show `docker:3f2a…` or `nginx.service`
//! instead of a number, and `snoop record --cgroup` can take a container
//! id prefix. Shared by the recorder and the analyzer; pure string work.

/// A container or service named by a cgroup path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// `docker`, `containerd` (CRI, `cri-containerd-…` scopes or kubepods
    /// cgroups), `crio`, `podman`, or `systemd` for a service unit.
    pub runtime: &'static str,
    /// The container id (hex), or the unit name for `systemd`.
    pub id: String,
}

impl Container {
    /// The name reports show: `RUNTIME:ID12` (the id's first 12
    /// characters, as `docker ps` shows it), or the unit name.
    pub fn name(&self) -> String {
        if self.runtime == "systemd" {
            self.id.clone()
        } else {
            let short: String = self.id.chars().take(12).collect();
            format!("{}:{short}", self.runtime)
        }
    }
}

/// A container id: at least 12 lowercase hex digits (runtimes use 64).
fn hex_id(s: &str) -> Option<&str> {
    (s.len() >= 12
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(s)
}

/// The container or service of one path component, given its parent.
fn component(c: &str, parent: &str) -> Option<Container> {
    let scoped = |prefix: &str| {
        let rest = c.strip_prefix(prefix)?;
        hex_id(rest.strip_suffix(".scope").unwrap_or(rest))
    };
    let mk = |runtime: &'static str, id: &str| Container {
        runtime,
        id: id.to_string(),
    };
    if let Some(id) = scoped("docker-") {
        return Some(mk("docker", id));
    }
    if let Some(id) = scoped("cri-containerd-") {
        return Some(mk("containerd", id));
    }
    if let Some(id) = scoped("crio-") {
        return Some(mk("crio", id));
    }
    if let Some(id) = scoped("libpod-") {
        return Some(mk("podman", id));
    }
    if let Some(id) = hex_id(c) {
        // cgroupfs drivers: /docker/ID, /kubepods/…/podUID/ID,
        // /libpod_parent/…/ID.
        if parent == "docker" {
            return Some(mk("docker", id));
        }
        if parent.starts_with("pod") || parent.starts_with("kubepods") {
            return Some(mk("containerd", id));
        }
    }
    if c.len() > ".service".len() && c.ends_with(".service") {
        return Some(mk("systemd", c));
    }
    None
}

/// The innermost container or service `path` names (a path relative to
/// the cgroup v2 mount, as the trace stores it), if any.
pub fn container(path: &str) -> Option<Container> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    (0..parts.len()).rev().find_map(|i| {
        let parent = if i == 0 { "" } else { parts[i - 1] };
        component(parts[i], parent)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";

    fn name(p: &str) -> Option<String> {
        container(p).map(|c| c.name())
    }

    #[test]
    fn runtimes_are_named() {
        let short = &ID[..12];
        let docker = format!("docker:{short}");
        assert_eq!(
            name(&format!("/system.slice/docker-{ID}.scope")),
            Some(docker.clone())
        );
        assert_eq!(name(&format!("/docker/{ID}")), Some(docker));
        assert_eq!(
            name(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{ID}.scope"
            )),
            Some(format!("containerd:{short}"))
        );
        assert_eq!(
            name(&format!("/kubepods/burstable/pod0a1b-22/{ID}")),
            Some(format!("containerd:{short}"))
        );
        assert_eq!(
            name(&format!("/kubepods.slice/crio-{ID}.scope")),
            Some(format!("crio:{short}"))
        );
        assert_eq!(
            name(&format!("/machine.slice/libpod-{ID}.scope/container")),
            Some(format!("podman:{short}"))
        );
        assert_eq!(
            name("/system.slice/nginx.service"),
            Some("nginx.service".into())
        );
        assert_eq!(
            name("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service"),
            Some("foo.service".into())
        );
        assert_eq!(container(&format!("/docker/{ID}")).unwrap().id, ID);
    }

    #[test]
    fn other_paths_name_nothing() {
        for p in [
            "/",
            "",
            "/user.slice/user-1000.slice/session-3.scope",
            "/system.slice",
            "/docker/not-hex",
            "/docker-123.scope",
            "/.service",
        ] {
            assert_eq!(container(p), None, "{p}");
        }
    }
}
