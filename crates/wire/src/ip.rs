//! Values shared by IPv4 and IPv6.

enum_with_unknown! {
    /// The IPv4 protocol / IPv6 next-header number.
    pub enum IpProtocol(u8) {
        HopByHop = 0,
        Icmp = 1,
        Igmp = 2,
        IpIp = 4,
        Tcp = 6,
        Udp = 17,
        Ipv6 = 41,
        Ipv6Route = 43,
        Ipv6Frag = 44,
        Gre = 47,
        Esp = 50,
        Ah = 51,
        Icmpv6 = 58,
        Ipv6NoNxt = 59,
        Ipv6Opts = 60,
        Sctp = 132,
        UdpLite = 136,
    }
}

impl IpProtocol {
    /// The name nft uses for the protocol (`meta l4proto tcp`), or `None` for unnamed ones.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            IpProtocol::HopByHop => "hopopts",
            IpProtocol::Icmp => "icmp",
            IpProtocol::Igmp => "igmp",
            IpProtocol::IpIp => "ipencap",
            IpProtocol::Tcp => "tcp",
            IpProtocol::Udp => "udp",
            IpProtocol::Ipv6 => "ipv6",
            IpProtocol::Ipv6Route => "routing",
            IpProtocol::Ipv6Frag => "frag",
            IpProtocol::Gre => "gre",
            IpProtocol::Esp => "esp",
            IpProtocol::Ah => "ah",
            IpProtocol::Icmpv6 => "ipv6-icmp",
            IpProtocol::Ipv6NoNxt => "ipv6-nonxt",
            IpProtocol::Ipv6Opts => "ipv6-opts",
            IpProtocol::Sctp => "sctp",
            IpProtocol::UdpLite => "udplite",
            IpProtocol::Unknown(_) => return None,
        })
    }
}

impl core::fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", u8::from(*self)),
        }
    }
}

/// The IP version of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpVersion {
    Ipv4,
    Ipv6,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(v)), v);
        }
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(IpProtocol::from(200), IpProtocol::Unknown(200));
        assert_eq!(IpProtocol::Udp.to_string(), "udp");
        assert_eq!(IpProtocol::Unknown(253).to_string(), "253");
    }
}
