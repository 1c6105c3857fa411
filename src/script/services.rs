//! Service names a script may use for ports (`"https"`, `"dns"`). A fixed
//! table rather than `/etc/services`, so a script means the same on every
//! host.

use super::rule_spec::closest;
use super::values::Problem;
use crate::plan::Proto;

pub struct Service {
    pub name: &'static str,
    pub port: u16,
    pub tcp: bool,
    pub udp: bool,
}

const fn both(name: &'static str, port: u16) -> Service {
    Service {
        name,
        port,
        tcp: true,
        udp: true,
    }
}
const fn tcp(name: &'static str, port: u16) -> Service {
    Service {
        name,
        port,
        tcp: true,
        udp: false,
    }
}
const fn udp(name: &'static str, port: u16) -> Service {
    Service {
        name,
        port,
        tcp: false,
        udp: true,
    }
}

pub const SERVICES: &[Service] = &[
    tcp("ftp", 21),
    tcp("ssh", 22),
    tcp("telnet", 23),
    tcp("smtp", 25),
    both("dns", 53),
    both("domain", 53),
    udp("dhcp", 67),
    udp("tftp", 69),
    tcp("http", 80),
    both("kerberos", 88),
    tcp("pop3", 110),
    udp("ntp", 123),
    tcp("imap", 143),
    udp("snmp", 161),
    tcp("bgp", 179),
    tcp("ldap", 389),
    both("https", 443),
    tcp("smtps", 465),
    tcp("submissions", 465),
    udp("syslog", 514),
    tcp("submission", 587),
    tcp("ldaps", 636),
    tcp("imaps", 993),
    tcp("pop3s", 995),
    udp("openvpn", 1194),
    tcp("mssql", 1433),
    both("nfs", 2049),
    tcp("mysql", 3306),
    tcp("rdp", 3389),
    both("sip", 5060),
    tcp("postgresql", 5432),
    tcp("postgres", 5432),
    tcp("amqp", 5672),
    tcp("vnc", 5900),
    tcp("redis", 6379),
    tcp("http-alt", 8080),
    tcp("mongodb", 27017),
    udp("wireguard", 51820),
];

pub fn lookup(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.name == name)
}

impl Service {
    pub fn protos(&self) -> Vec<Proto> {
        let mut protos = Vec::new();
        if self.tcp {
            protos.push(Proto::Tcp);
        }
        if self.udp {
            protos.push(Proto::Udp);
        }
        protos
    }

    pub fn uses(&self, proto: Proto) -> bool {
        match proto {
            Proto::Tcp => self.tcp,
            Proto::Udp => self.udp,
            Proto::Icmp | Proto::Icmpv6 => false,
        }
    }
}

/// All names, for hints.
pub fn names() -> String {
    SERVICES
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `unknown service `htps``, with the nearest name when one is close
/// (`did you mean `https`?`) and the whole table only when none is.
pub fn unknown(name: &str) -> Problem {
    let problem = Problem::new(format!("unknown service `{name}`"));
    let all: Vec<&str> = SERVICES.iter().map(|s| s.name).collect();
    match closest(&name.to_lowercase(), &all) {
        Some(near) => problem.hint(format!("did you mean `{near}`?")),
        None => problem.hint(format!("write the port number, or one of: {}", names())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_service_gets_the_nearest_name() {
        for (typo, near) in [
            ("htps", "https"),
            ("HTTPS", "https"),
            ("smtpp", "smtp"),
            ("postgress", "postgres"),
        ] {
            assert_eq!(
                unknown(typo).hint.as_deref(),
                Some(format!("did you mean `{near}`?").as_str()),
                "{typo}"
            );
        }
        assert!(unknown("eighty")
            .hint
            .unwrap()
            .starts_with("write the port number"));
    }
}
