//! Containers and services: the test makes two cgroups under the
//! cgroup v2 mount, named the way docker (`docker-ID.scope`) and systemd
//! (`NAME.service`) name theirs, moves a TCP server into the first and its
//! client into the second, and exchanges known bytes. The trace must name
//! both cgroup ids with their paths (the directories' inode numbers), the
//! messages must carry those ids, the paths must read as `docker:ID12` and
//! the unit; and a recording given only a prefix of the container id
//! (`--cgroup`) must record the server's messages and not the client's.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use snoop_format::Table;
use snoop_record::cgroups::find_container;
use snoop_record::kernel::{cgroup2_root, KernelOptions};

use crate::util::{
    bpf_ok, message_cgroups, name, opts, read_line, server, spawn, start, totals, wait_ok,
};

/// The test's cgroups, removed on drop (after their processes exited).
struct Cgroups {
    root: PathBuf,
    parent: PathBuf,
    docker: PathBuf,
    service: PathBuf,
    id: String,
}

impl Cgroups {
    fn new() -> Cgroups {
        let root = PathBuf::from(cgroup2_root().expect("cgroup v2 mount"));
        let tag = name("");
        let t = snoop_format::boottime_ns();
        let id = format!(
            "{:016x}{:016x}{:016x}{:016x}",
            t,
            u64::from(std::process::id()),
            t.rotate_left(17),
            t ^ 0x5eed
        );
        let parent = root.join(format!("snoop-t-{tag}"));
        let c = Cgroups {
            docker: parent.join(format!("docker-{id}.scope")),
            service: parent.join(format!("snoop-t{tag}.service")),
            root,
            parent,
            id,
        };
        for d in [&c.parent, &c.docker, &c.service] {
            std::fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        c
    }

    fn id_of(p: &Path) -> u64 {
        std::fs::metadata(p).expect("cgroup dir").ino()
    }

    fn rel(&self, p: &Path) -> String {
        format!(
            "/{}",
            p.strip_prefix(&self.root).expect("under root").display()
        )
    }

    fn enter(p: &Path, pid: u32) {
        std::fs::write(p.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", p.display()));
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in [&self.docker, &self.service, &self.parent] {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A server (comm `sn`) in the docker-named cgroup, a client (`cn`) in
/// the service: `n` bytes each way, recorded by `rec`.
fn exchange(
    cg: &Cgroups,
    rec: crate::util::Recording,
    sn: &str,
    cn: &str,
    n: usize,
) -> (snoop_format::Trace, tempfile::TempDir) {
    let (srv, port) = server("tcp-server", sn, "127.0.0.1:0", n, n);
    Cgroups::enter(&cg.docker, srv.id());
    let (mut cli, mut out) = spawn(&["tcp-hold", cn, &format!("127.0.0.1:{port}"), &n.to_string()]);
    assert_eq!(read_line(&mut out), "connected");
    Cgroups::enter(&cg.service, cli.id());
    cli.stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("go");
    wait_ok(cli);
    wait_ok(srv);
    let (t, _s, d) = rec.stop();
    (t, d)
}

#[test]
fn cgroup_paths_containers_and_a_container_id_prefix() {
    if !bpf_ok("containers") {
        return;
    }
    let cg = Cgroups::new();
    let (docker_id, service_id) = (Cgroups::id_of(&cg.docker), Cgroups::id_of(&cg.service));
    let n = 4321usize;

    let (sn, cn) = (name("cs"), name("cc"));
    let rec = start(opts(&[&sn, &cn]));
    let (t, _d) = exchange(&cg, rec, &sn, &cn, n);
    let ids = message_cgroups(&t);
    assert_eq!(
        ids.get(&sn),
        Some(&vec![docker_id]),
        "server's messages: {ids:?}"
    );
    assert_eq!(
        ids.get(&cn),
        Some(&vec![service_id]),
        "client's messages: {ids:?}"
    );
    let paths = t.cgroups();
    let path_of = |id: u64| {
        paths
            .iter()
            .find(|p| p.0 == id)
            .map(|p| p.1.clone())
            .unwrap_or_else(|| panic!("cgroup {id} not named in {paths:?}"))
    };
    assert_eq!(path_of(docker_id), cg.rel(&cg.docker));
    assert_eq!(path_of(service_id), cg.rel(&cg.service));
    let name_of = |id: u64| snoop_format::cgroup::container(&path_of(id)).map(|c| c.name());
    assert_eq!(name_of(docker_id), Some(format!("docker:{}", &cg.id[..12])));
    let unit = cg
        .service
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert_eq!(name_of(service_id), Some(unit));

    // --cgroup with a prefix of the container id: the server only.
    let (found, path) = find_container(&cg.id[..16]).expect("the test's container");
    assert_eq!((found, path), (docker_id, cg.rel(&cg.docker)));
    let (sn, cn) = (name("cs"), name("cc"));
    let rec = start(KernelOptions {
        cgroup: found,
        ..opts(&[&sn, &cn])
    });
    let (t, _d) = exchange(&cg, rec, &sn, &cn, n);
    let m = totals(&t, Table::Messages);
    assert_eq!(
        m.get(&sn).map(|b| (b.0.rx, b.0.tx)),
        Some((n as u64, n as u64)),
        "{m:?}"
    );
    assert!(
        !m.contains_key(&cn),
        "the client is in another cgroup: {m:?}"
    );
}
