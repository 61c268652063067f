//! Kernel plumbing over netlink (`rtnetlink`): bridges, veth pairs, addresses, routes, and
//! network namespaces bind-mounted on files.
//!
//! Every operation runs on a short-lived dedicated thread with its own single-threaded tokio
//! runtime and netlink connection, never on the caller's thread: a netlink socket belongs to
//! the network namespace of the thread that opened it, and namespace switches (`unshare`,
//! `setns`) must never happen on a thread shared with other work (a tokio worker, the
//! daemon's blocking pool).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::NetworkError;

/// Runs `f` on a fresh OS thread and returns its result.
pub(crate) fn in_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("barge-netlink".into())
            .spawn_scoped(s, f)
            .expect("spawn netlink thread")
            .join()
            .expect("netlink thread panicked")
    })
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, NetworkError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NetworkError::io("netlink runtime", e))
}

/// Opens a netlink connection in the calling thread's network namespace and runs `f` with it.
pub(crate) fn with_netlink<T, F, Fut>(rt: &tokio::runtime::Runtime, f: F) -> Result<T, NetworkError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: std::future::Future<Output = Result<T, NetworkError>>,
{
    let (conn, handle, _) = {
        let _ctx = rt.enter();
        rtnetlink::new_connection().map_err(|e| NetworkError::io("netlink socket", e))?
    };
    rt.block_on(async move {
        let task = tokio::spawn(conn);
        let r = f(handle).await;
        task.abort();
        r
    })
}

pub(crate) fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| c.get()) == Some(-errno))
}

pub(crate) async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(NetworkError::netlink(format!("get link {name}"), e)),
    }
}

async fn must_index(h: &Handle, name: &str) -> Result<u32, NetworkError> {
    index_of(h, name)
        .await?
        .ok_or_else(|| NetworkError::netlink(format!("get link {name}"), "no such device"))
}

/// Adds `ip/prefix` to link `idx`; an address that is already there is fine. IPv6 addresses
/// get `IFA_F_NODAD` (as dockerd's): usable at once, not after a second of duplicate address
/// detection on a link whose subnet barge alone hands out.
pub(crate) async fn add_address(
    h: &Handle,
    idx: u32,
    ip: IpAddr,
    prefix: u8,
) -> Result<(), NetworkError> {
    let mut req = h.address().add(idx, ip, prefix);
    if ip.is_ipv6() {
        use netlink_packet_route::address::{AddressAttribute, AddressFlags};
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
        Err(e) => Err(NetworkError::netlink(format!("add {ip}/{prefix}"), e)),
    }
}

fn sysctl(path: &str, value: &str) {
    if let Err(e) = std::fs::write(path, value) {
        tracing::warn!("cannot set {path}={value}: {e}");
    }
}

/// Creates bridge `name` with `gateway/prefix` (and the IPv6 gateway `v6`, if any) and brings
/// it up (idempotent). Also turns on IPv4 forwarding and `route_localnet` on the bridge, which
/// published ports on 127.0.0.1 need.
pub(crate) fn ensure_bridge(
    name: &str,
    gateway: Ipv4Addr,
    prefix: u8,
    v6: Option<(Ipv6Addr, u8)>,
) -> Result<(), NetworkError> {
    in_thread(|| {
        let rt = runtime()?;
        with_netlink(&rt, |h| async move {
            let idx = match index_of(&h, name).await? {
                Some(i) => i,
                None => {
                    match h.link().add(LinkBridge::new(name).build()).execute().await {
                        Ok(()) => {}
                        Err(e) if is_errno(&e, libc::EEXIST) => {}
                        Err(e) => {
                            return Err(NetworkError::netlink(format!("add bridge {name}"), e))
                        }
                    }
                    must_index(&h, name).await?
                }
            };
            add_address(&h, idx, gateway.into(), prefix).await?;
            if let Some((gw6, prefix6)) = v6 {
                add_address(&h, idx, gw6.into(), prefix6).await?;
            }
            h.link()
                .set(LinkUnspec::new_with_index(idx).up().build())
                .execute()
                .await
                .map_err(|e| NetworkError::netlink(format!("set {name} up"), e))
        })
    })?;
    sysctl("/proc/sys/net/ipv4/ip_forward", "1");
    sysctl(
        &format!("/proc/sys/net/ipv4/conf/{name}/route_localnet"),
        "1",
    );
    Ok(())
}

/// Deletes link `name` if it exists.
pub(crate) fn delete_link(name: &str) -> Result<(), NetworkError> {
    in_thread(|| {
        let rt = runtime()?;
        with_netlink(&rt, |h| async move {
            if let Some(idx) = index_of(&h, name).await? {
                match h.link().del(idx).execute().await {
                    Ok(()) => {}
                    Err(e) if is_errno(&e, libc::ENODEV) => {}
                    Err(e) => return Err(NetworkError::netlink(format!("delete {name}"), e)),
                }
            }
            Ok(())
        })
    })
}

/// Names of the links enslaved to bridge `bridge` (empty if it does not exist).
pub(crate) fn bridge_ports(bridge: &str) -> Vec<String> {
    let dir = format!("/sys/class/net/{bridge}/brif");
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether a link named `name` exists in the host namespace.
pub(crate) fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Creates a network namespace bind-mounted on `path` with `lo` up.
pub(crate) fn create_netns(path: &Path) -> Result<(), NetworkError> {
    in_thread(|| {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetworkError::io("unshare(CLONE_NEWNET)", e.into()))?;
        File::create(path)
            .map_err(|e| NetworkError::io(format!("create {}", path.display()), e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| NetworkError::io(format!("bind netns on {}", path.display()), e.into()))?;
        let rt = runtime()?;
        with_netlink(&rt, |h| async move {
            let lo = must_index(&h, "lo").await?;
            h.link()
                .set(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await
                .map_err(|e| NetworkError::netlink("set lo up", e))
        })
    })
}

/// Unmounts and removes a namespace file made by [`create_netns`] (missing is fine).
pub(crate) fn remove_netns(path: &Path) {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}

/// Creates a pod sandbox's IPC and UTS namespaces (host name `hostname`) bind-mounted on
/// `dir/ipc` and `dir/uts`, and its `/dev/shm` tmpfs on `dir/shm` (`shm_size` bytes, 0 for
/// 64 MiB; mode 1777, nosuid/nodev/noexec as docker's). The namespaces are made by a fresh
/// thread (`unshare` changes only the calling thread's), which exits once they are mounted.
/// On error nothing is left behind.
pub(crate) fn create_pod_namespaces(
    dir: &Path,
    hostname: &str,
    shm_size: i64,
) -> Result<(), NetworkError> {
    let made = in_thread(|| {
        std::fs::create_dir_all(dir.join("shm"))
            .map_err(|e| NetworkError::io(format!("create {}", dir.display()), e))?;
        unshare(CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
            .map_err(|e| NetworkError::io("unshare(CLONE_NEWIPC|CLONE_NEWUTS)", e.into()))?;
        nix::unistd::sethostname(hostname)
            .map_err(|e| NetworkError::io(format!("sethostname {hostname}"), e.into()))?;
        for ns in ["ipc", "uts"] {
            let path = dir.join(ns);
            File::create(&path)
                .map_err(|e| NetworkError::io(format!("create {}", path.display()), e))?;
            mount(
                Some(format!("/proc/thread-self/ns/{ns}").as_str()),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| {
                NetworkError::io(format!("bind {ns} ns on {}", path.display()), e.into())
            })?;
        }
        let shm = dir.join("shm");
        let size = if shm_size > 0 { shm_size } else { 64 << 20 };
        mount(
            Some("shm"),
            &shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(format!("mode=1777,size={size}").as_str()),
        )
        .map_err(|e| NetworkError::io(format!("mount shm on {}", shm.display()), e.into()))
    });
    if made.is_err() {
        remove_pod_namespaces(dir);
    }
    made
}

/// Unmounts and removes what [`create_pod_namespaces`] made in `dir` (missing is fine). A
/// container still running keeps its namespaces and `/dev/shm` until it exits.
pub(crate) fn remove_pod_namespaces(dir: &Path) {
    for name in ["ipc", "uts", "shm"] {
        let path = dir.join(name);
        let _ = umount2(&path, MntFlags::MNT_DETACH);
        if name == "shm" {
            let _ = std::fs::remove_dir(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Puts bridge port `ifname` in hairpin mode (`brport/hairpin_mode`, as kubelet's
/// `--hairpin-mode=hairpin-veth` and dockerd without its userland proxy do): a frame may leave
/// by the port it came in on. With `br_netfilter` (which the cluster's Service proxy needs), a
/// DNAT back to the sender's own address — a pod reaching itself through its Service, a
/// container its own published port — is bridged out of the sender's port, which a bridge
/// drops otherwise. Best effort: logged, not fatal (the rest of the network works without it).
fn set_hairpin(ifname: &str) {
    let path = format!("/sys/class/net/{ifname}/brport/hairpin_mode");
    if let Err(e) = std::fs::write(&path, "1") {
        tracing::warn!("hairpin mode on {ifname}: {path}: {e}");
    }
}

/// One veth pair to make: host end on a bridge, container end inside a namespace.
pub(crate) struct Veth<'a> {
    pub bridge: &'a str,
    pub host_ifname: &'a str,
    /// Name the container end has until it is renamed inside the namespace.
    pub peer_tmp: &'a str,
    pub ifname: &'a str,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 address and prefix length, on networks with IPv6.
    pub ip6: Option<(Ipv6Addr, u8)>,
    /// IPv6 default route via this gateway.
    pub gateway6: Option<Ipv6Addr>,
    /// Both ends' MTU (the network's `com.docker.network.driver.mtu`); `None` = the kernel's.
    pub mtu: Option<u32>,
}

/// Creates the veth pair, plugs the host end into the bridge, moves the other end into the
/// namespace at `netns`, and configures it there (name, MAC, address, up, default route).
/// On error the host end is deleted (which deletes both ends).
pub(crate) fn attach_veth(netns: &Path, v: &Veth<'_>) -> Result<(), NetworkError> {
    let r = in_thread(|| {
        let ns = File::open(netns)
            .map_err(|e| NetworkError::io(format!("open {}", netns.display()), e))?;
        let rt = runtime()?;
        let ns_fd = ns.as_raw_fd();
        with_netlink(&rt, |h| async move {
            let br = must_index(&h, v.bridge).await?;
            h.link()
                .add(LinkVeth::new(v.host_ifname, v.peer_tmp).build())
                .execute()
                .await
                .map_err(|e| NetworkError::netlink(format!("add veth {}", v.host_ifname), e))?;
            let host = must_index(&h, v.host_ifname).await?;
            let mut up = LinkUnspec::new_with_index(host).controller(br).up();
            if let Some(m) = v.mtu {
                up = up.mtu(m);
            }
            h.link().set(up.build()).execute().await.map_err(|e| {
                NetworkError::netlink(format!("plug {} into {}", v.host_ifname, v.bridge), e)
            })?;
            set_hairpin(v.host_ifname);
            let peer = must_index(&h, v.peer_tmp).await?;
            h.link()
                .set(LinkUnspec::new_with_index(peer).setns_by_fd(ns_fd).build())
                .execute()
                .await
                .map_err(|e| NetworkError::netlink("move veth into the container", e))
        })?;
        setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetworkError::io("setns into the container", e.into()))?;
        with_netlink(&rt, |h| async move {
            let idx = must_index(&h, v.peer_tmp).await?;
            let mut named = LinkUnspec::new_with_index(idx)
                .name(v.ifname.to_string())
                .address(v.mac.to_vec());
            if let Some(m) = v.mtu {
                named = named.mtu(m);
            }
            h.link()
                .set(named.build())
                .execute()
                .await
                .map_err(|e| NetworkError::netlink(format!("rename to {}", v.ifname), e))?;
            add_address(&h, idx, v.ip.into(), v.prefix).await?;
            if let Some((ip6, prefix6)) = v.ip6 {
                add_address(&h, idx, ip6.into(), prefix6).await?;
            }
            h.link()
                .set(LinkUnspec::new_with_index(idx).up().build())
                .execute()
                .await
                .map_err(|e| NetworkError::netlink(format!("set {} up", v.ifname), e))?;
            if let Some(gw) = v.gateway {
                h.route()
                    .add(
                        RouteMessageBuilder::<Ipv4Addr>::new()
                            .gateway(gw)
                            .output_interface(idx)
                            .build(),
                    )
                    .execute()
                    .await
                    .map_err(|e| NetworkError::netlink(format!("default route via {gw}"), e))?;
            }
            if let Some(gw) = v.gateway6 {
                h.route()
                    .add(
                        RouteMessageBuilder::<Ipv6Addr>::new()
                            .gateway(gw)
                            .output_interface(idx)
                            .build(),
                    )
                    .execute()
                    .await
                    .map_err(|e| NetworkError::netlink(format!("default route via {gw}"), e))?;
            }
            Ok(())
        })
    });
    if r.is_err() {
        let _ = delete_link(v.host_ifname);
    }
    r
}

/// Deletes interface `ifname` inside the namespace at `netns` (network disconnect).
pub(crate) fn delete_in_netns(netns: &Path, ifname: &str) -> Result<(), NetworkError> {
    in_thread(|| {
        let ns = File::open(netns)
            .map_err(|e| NetworkError::io(format!("open {}", netns.display()), e))?;
        setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetworkError::io("setns into the container", e.into()))?;
        let rt = runtime()?;
        with_netlink(&rt, |h| async move {
            if let Some(idx) = index_of(&h, ifname).await? {
                h.link()
                    .del(idx)
                    .execute()
                    .await
                    .map_err(|e| NetworkError::netlink(format!("delete {ifname}"), e))?;
            }
            Ok(())
        })
    })
}

/// Opens the embedded DNS server's sockets (UDP and TCP on 127.0.0.11:53) inside the
/// namespace at `netns`. Sockets stay in the namespace they were made in, so the daemon can
/// serve them from any thread.
pub(crate) fn dns_sockets(netns: &Path) -> Result<(UdpSocket, TcpListener), NetworkError> {
    in_thread(|| {
        let ns = File::open(netns)
            .map_err(|e| NetworkError::io(format!("open {}", netns.display()), e))?;
        setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetworkError::io("setns into the container", e.into()))?;
        let addr = (crate::dns::DNS_ADDR, 53);
        let udp =
            UdpSocket::bind(addr).map_err(|e| NetworkError::io("bind 127.0.0.11:53/udp", e))?;
        let tcp =
            TcpListener::bind(addr).map_err(|e| NetworkError::io("bind 127.0.0.11:53/tcp", e))?;
        udp.set_nonblocking(true)
            .and_then(|_| tcp.set_nonblocking(true))
            .map_err(|e| NetworkError::io("dns sockets", e))?;
        Ok((udp, tcp))
    })
}
