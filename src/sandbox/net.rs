//! Network rules: which addresses and ports a process may connect to or bind.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::{Range, RangeFrom, RangeFull, RangeInclusive};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::Policy;
use crate::op::{OpError, SyscallOpType, errno};

/// The receive flags a tenant may pass: `MSG_PEEK` and `MSG_WAITALL`, which leave a receive
/// waiting for the data its socket's readiness announces, and `MSG_TRUNC` and `MSG_DONTWAIT`,
/// which are dropped (a result never claims more than it holds; a receive always waits). Any
/// other (`MSG_ERRQUEUE`, waiting on a socket readable for other data, would be woken and fail
/// `EAGAIN` for ever) is refused.
const RECV_FLAGS: u32 = rustix::net::RecvFlags::PEEK.bits()
    | rustix::net::RecvFlags::WAITALL.bits()
    | rustix::net::RecvFlags::TRUNC.bits()
    | rustix::net::RecvFlags::DONTWAIT.bits();

impl Policy {
    /// The sockets family's rules: receive flags, and what the policy lets a socket be made for,
    /// connect or send to, bind and listen on.
    pub(super) fn check_socket(&self, op: &SyscallOpType) -> Result<(), OpError> {
        match op {
            SyscallOpType::Recv { flags, .. } | SyscallOpType::RecvFrom { flags, .. } if flags & !RECV_FLAGS != 0 => {
                Err(OpError::new(
                    errno::EINVAL,
                    format!(
                        "{}: flags {:#x} are not supported (MSG_PEEK and MSG_WAITALL are)",
                        op.name(),
                        flags & !RECV_FLAGS
                    ),
                ))
            }
            SyscallOpType::Socket { .. } if self.connect.is_empty() && self.bind.is_empty() => {
                Err(OpError::new(errno::EACCES, "socket: the policy allows no network access"))
            }
            SyscallOpType::Connect { addr, .. } | SyscallOpType::SendTo { addr, .. }
                if !admits_connect(&self.connect, addr) =>
            {
                Err(OpError::new(errno::EACCES, format!("{}: the policy does not allow {addr}", op.name())))
            }
            SyscallOpType::Bind { addr, .. } if !admits_bind(&self.bind, addr) => {
                Err(OpError::new(errno::EACCES, format!("bind: the policy does not allow binding {addr}")))
            }
            SyscallOpType::Shutdown { how, .. } if !(0..=2).contains(how) => {
                Err(OpError::new(errno::EINVAL, format!("shutdown: how {how} is not SHUT_RD, SHUT_WR or SHUT_RDWR")))
            }
            SyscallOpType::Listen { .. } if !self.listen => {
                Err(OpError::new(errno::EACCES, "listen: the policy does not allow listening"))
            }
            _ => Ok(()),
        }
    }
}

/// An inclusive range of ports. Built from a single port (`8080`), a range (`1024..=65535`) or
/// `..` (every port, 0 included, so binding an ephemeral port is allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// Every port, 0 to 65535.
    pub const ALL: PortRange = PortRange { first: 0, last: u16::MAX };

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl From<u16> for PortRange {
    fn from(port: u16) -> Self {
        PortRange { first: port, last: port }
    }
}

impl From<RangeInclusive<u16>> for PortRange {
    fn from(r: RangeInclusive<u16>) -> Self {
        PortRange { first: *r.start(), last: *r.end() }
    }
}

impl From<RangeFull> for PortRange {
    fn from(_: RangeFull) -> Self {
        PortRange::ALL
    }
}

impl From<Range<u16>> for PortRange {
    /// `8000..9000`: 8000 to 8999 (an empty range allows no port).
    fn from(r: Range<u16>) -> Self {
        match r.end.checked_sub(1) {
            Some(last) if r.start <= last => PortRange { first: r.start, last },
            _ => PortRange { first: 1, last: 0 },
        }
    }
}

impl From<RangeFrom<u16>> for PortRange {
    /// `1024..`: 1024 to 65535.
    fn from(r: RangeFrom<u16>) -> Self {
        PortRange { first: r.start, last: u16::MAX }
    }
}

/// What the network rules take as a network: an [`IpNet`] (`"10.0.0.0/8".parse()?`), or one
/// address (`IpAddr`, `Ipv4Addr`, `Ipv6Addr`, such as `Ipv4Addr::LOCALHOST`), which is a
/// network of that address alone.
pub trait Network {
    /// The network.
    fn into_net(self) -> IpNet;
}

impl Network for IpNet {
    fn into_net(self) -> IpNet {
        self
    }
}

impl Network for Ipv4Net {
    fn into_net(self) -> IpNet {
        self.into()
    }
}

impl Network for Ipv6Net {
    fn into_net(self) -> IpNet {
        self.into()
    }
}

impl Network for IpAddr {
    fn into_net(self) -> IpNet {
        self.into()
    }
}

impl Network for Ipv4Addr {
    fn into_net(self) -> IpNet {
        IpAddr::V4(self).into()
    }
}

impl Network for Ipv6Addr {
    fn into_net(self) -> IpNet {
        IpAddr::V6(self).into()
    }
}

/// One allowed network and port range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetRule {
    pub(crate) net: IpNet,
    pub(crate) ports: PortRange,
}

impl NetRule {
    pub(crate) fn any() -> [NetRule; 2] {
        [
            NetRule { net: "0.0.0.0/0".parse().expect("literal"), ports: PortRange::ALL },
            NetRule { net: "::/0".parse().expect("literal"), ports: PortRange::ALL },
        ]
    }
}

/// Whether any rule admits `addr`. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is checked as
/// the IPv4 address it reaches, so a v6 socket cannot slip past an IPv4 rule.
pub(crate) fn admits(rules: &[NetRule], addr: &SocketAddr) -> bool {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    rules.iter().any(|r| r.net.contains(&ip) && r.ports.contains(addr.port()))
}

/// Whether the connect rules admit reaching `addr`. The kernel sends a connection or datagram
/// for an unspecified address (`0.0.0.0`, `::`, `::ffff:0.0.0.0`) to the host itself, so it is
/// checked as the loopback address it reaches.
pub(crate) fn admits_connect(rules: &[NetRule], addr: &SocketAddr) -> bool {
    let reached = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_unspecified()) => {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        ip => ip,
    };
    admits(rules, &SocketAddr::new(reached, addr.port()))
}

/// Whether the bind rules admit binding `addr`. The crate's IPv6 sockets are dual-stack, so
/// binding the IPv6 wildcard `[::]` also binds the IPv4 wildcard on the same port: the rules
/// must admit both.
pub(crate) fn admits_bind(rules: &[NetRule], addr: &SocketAddr) -> bool {
    admits(rules, addr)
        && (!matches!(addr.ip(), IpAddr::V6(v6) if v6.is_unspecified())
            || admits(rules, &SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), addr.port())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(net: &str, ports: impl Into<PortRange>) -> NetRule {
        NetRule { net: net.parse().unwrap(), ports: ports.into() }
    }

    #[test]
    fn rules_match_prefix_and_ports() {
        let rules = [rule("127.0.0.0/8", 1000..=2000), rule("::1/128", 443)];
        assert!(admits(&rules, &"127.1.2.3:1500".parse().unwrap()));
        assert!(!admits(&rules, &"127.1.2.3:999".parse().unwrap()));
        assert!(!admits(&rules, &"128.0.0.1:1500".parse().unwrap()));
        assert!(admits(&rules, &"[::1]:443".parse().unwrap()));
        assert!(!admits(&rules, &"[::1]:444".parse().unwrap()));
    }

    #[test]
    fn connecting_to_the_unspecified_address_is_connecting_to_loopback() {
        let no_loopback = [rule("0.0.0.0/2", ..), rule("::/0", 1..=u16::MAX)];
        for addr in ["0.0.0.0:80", "[::ffff:0.0.0.0]:80", "127.0.0.1:80"] {
            assert!(!admits_connect(&no_loopback, &addr.parse().unwrap()), "{addr}");
        }
        assert!(admits_connect(&no_loopback, &"1.2.3.4:80".parse().unwrap()));
        let only_v6_loopback = [rule("::1/128", 80)];
        assert!(admits_connect(&only_v6_loopback, &"[::]:80".parse().unwrap()));
        assert!(!admits_connect(&[rule("::/128", 80)], &"[::]:80".parse().unwrap()));
    }

    #[test]
    fn binding_the_v6_wildcard_needs_the_v4_wildcard_too() {
        let v6_any = [rule("::/0", ..)];
        assert!(!admits_bind(&v6_any, &"[::]:80".parse().unwrap()), "dual-stack [::] also takes IPv4");
        assert!(admits_bind(&v6_any, &"[::1]:80".parse().unwrap()));
        let both = [rule("::/0", ..), rule("0.0.0.0/0", 80)];
        assert!(admits_bind(&both, &"[::]:80".parse().unwrap()));
        assert!(!admits_bind(&both, &"[::]:81".parse().unwrap()));
        assert!(admits_bind(&both, &"0.0.0.0:80".parse().unwrap()));
    }

    #[test]
    fn v4_mapped_v6_is_checked_as_v4() {
        let v6_only = [rule("::/0", ..)];
        assert!(!admits(&v6_only, &"[::ffff:10.0.0.1]:80".parse().unwrap()));
        let v4 = [rule("10.0.0.0/8", ..)];
        assert!(admits(&v4, &"[::ffff:10.0.0.1]:80".parse().unwrap()));
    }
}
