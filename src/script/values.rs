//! Validation of the values a script hands to stdlib: ports, addresses,
//! names and free text. Everything that can reach an iptables-restore file
//! passes through here first, so nothing can break out of its field.

use std::net::IpAddr;

use ipnet::IpNet;
use rhai::Dynamic;

use super::error::Location;
use super::services;
use crate::netfilter::{icmp_type_by_name, icmp_types, Family, MAX_CHAIN_NAME, OWNED_PREFIX};
use crate::plan::{Endpoint, IcmpType, PortRange, Proto, RateLimit, RateUnit};

/// A validation failure before it is given a place in the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub hint: Option<String>,
    /// Where in the call the fault lies, outermost first (which argument,
    /// which key of a map, which item of an array), so the caret can go
    /// under it; empty: the call as a whole.
    pub at: Vec<Step>,
    /// The message names what has no value (`its ports`); the function
    /// around it completes the sentence (see [`Problem::missing`]).
    pub missing: bool,
    /// The fault is in another file than the call's (a line of an address
    /// list): shown there instead.
    pub place: Option<Box<Location>>,
}

/// One step from a call down to the value at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Arg(usize),
    /// The value under a key of a map.
    Key(String),
    /// A key of a map itself (an unknown one).
    KeyName(String),
    Item(usize),
}

impl Problem {
    pub fn new(message: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            hint: None,
            at: Vec::new(),
            missing: false,
            place: None,
        }
    }

    /// `()` where a value was needed: Rhai's answer for a missing map key
    /// or a variable never set. Never read as "no restriction".
    pub fn missing(what: impl Into<String>) -> Problem {
        Problem {
            missing: true,
            ..Problem::new(what)
        }
        .hint("only a key left out means \"any\"; a value that is not there is refused, so a typo cannot open the firewall")
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Problem {
        self.hint = Some(hint.into());
        self
    }

    /// The problem lies inside `step` (prepended: problems are found
    /// innermost first).
    pub fn within(mut self, step: Step) -> Problem {
        self.at.insert(0, step);
        self
    }

    /// The full sentence, naming `function` for a missing value.
    pub fn sentence(&self, function: &str) -> String {
        if self.missing {
            format!(
                "`{function}` got no value for {}: a missing map key or unset variable?",
                self.message
            )
        } else {
            self.message.clone()
        }
    }
}

/// `value`, unless it is `()`.
pub fn given<'a>(value: &'a Dynamic, what: &str) -> Checked<&'a Dynamic> {
    if value.is_unit() {
        Err(Problem::missing(what))
    } else {
        Ok(value)
    }
}

pub type Checked<T> = Result<T, Problem>;

/// A value's type in words, never Rhai's internal type names.
pub fn describe(value: &Dynamic) -> String {
    if value.is_unit() {
        "nothing".into()
    } else if value.is_int() {
        format!("the number {value}")
    } else if value.is_string() {
        format!("the string \"{value}\"")
    } else if value.is_bool() {
        format!("`{value}`")
    } else if value.is_array() {
        "an array".into()
    } else if value.is_map() {
        "a map".into()
    } else if value.is_float() {
        format!("the decimal number {value}")
    } else if value.is_char() {
        format!("the character '{value}'")
    } else if value.is_fnptr() {
        "a function".into()
    } else {
        "a value of another kind".into()
    }
}

/// The items of an array, or the value itself: borrowed, not copied (a
/// list can hold 100,000 addresses).
pub fn one_or_many(value: &Dynamic) -> Items<'_> {
    match value.read_lock::<rhai::Array>() {
        Some(array) => Items::Many(array),
        None => Items::One(value),
    }
}

/// What [`one_or_many`] gives: a slice of values either way.
pub enum Items<'a> {
    One(&'a Dynamic),
    Many(rhai::DynamicReadLock<'a, rhai::Array>),
}

impl std::ops::Deref for Items<'_> {
    type Target = [Dynamic];

    fn deref(&self) -> &[Dynamic] {
        match self {
            Items::One(value) => std::slice::from_ref(*value),
            Items::Many(array) => array.as_slice(),
        }
    }
}

/// The string, shared with the script rather than copied.
pub fn string(value: &Dynamic, what: &str) -> Checked<rhai::ImmutableString> {
    given(value, what)?
        .read_lock::<rhai::ImmutableString>()
        .map(|s| s.clone())
        .ok_or_else(|| {
            Problem::new(format!(
                "{what} must be a string, found {}",
                describe(value)
            ))
        })
}

pub fn integer(value: &Dynamic, what: &str) -> Checked<i64> {
    given(value, what)?.as_int().map_err(|_| {
        Problem::new(format!(
            "{what} must be a whole number, found {}",
            describe(value)
        ))
    })
}

pub fn bounded(value: &Dynamic, what: &str, range: std::ops::RangeInclusive<i64>) -> Checked<u32> {
    let n = integer(value, what)?;
    if range.contains(&n) {
        Ok(n as u32)
    } else {
        Err(Problem::new(format!(
            "{what} {n} is out of range {}..{}",
            range.start(),
            range.end()
        )))
    }
}

pub fn port_number(n: i64) -> Checked<u16> {
    if (1..=65535).contains(&n) {
        Ok(n as u16)
    } else {
        Err(Problem::new(format!("port {n} is out of range 1..65535")))
    }
}

/// Ports as docs/functions.md allows them: a number, a service name, a range
/// `"6000:6010"`, or an array of these. `proto` narrows service names.
pub fn ports(value: &Dynamic, proto: Option<Proto>) -> Checked<Vec<PortRange>> {
    let items = one_or_many(value);
    if value.is_array() && items.is_empty() {
        return Err(Problem::new("the list of ports is empty").hint("name at least one port"));
    }
    let listed = value.is_array();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item = if listed {
                given(item, "one of its ports").map_err(|p| p.within(Step::Item(i)))?
            } else {
                given(item, "its ports")?
            };
            port_item(item, proto).map_err(|p| if listed { p.within(Step::Item(i)) } else { p })
        })
        .collect()
}

fn port_item(item: &Dynamic, proto: Option<Proto>) -> Checked<PortRange> {
    if let Ok(n) = item.as_int() {
        return port_number(n).map(PortRange::single);
    }
    let Some(text) = item.read_lock::<rhai::ImmutableString>() else {
        return Err(Problem::new(format!(
            "expected a port: a number, a service name like \"https\", or a range like \"6000:6010\"; found {}",
            describe(item)
        )));
    };
    port_text(&text, proto)
}

pub fn port_text(text: &str, proto: Option<Proto>) -> Checked<PortRange> {
    let number = |part: &str| -> Checked<u16> {
        let n: i64 = part.trim().parse().map_err(|_| {
            Problem::new(format!("`{part}` in port range \"{text}\" is not a number"))
        })?;
        port_number(n)
    };
    if let Some((first, last)) = text.split_once(':') {
        let (first, last) = (number(first)?, number(last)?);
        if first > last {
            return Err(
                Problem::new(format!("port range \"{text}\" runs backwards"))
                    .hint(format!("write \"{last}:{first}\"")),
            );
        }
        return Ok(PortRange { first, last });
    }
    if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
        return number(text).map(PortRange::single);
    }
    service_port(text, proto).map(PortRange::single)
}

fn service_port(name: &str, proto: Option<Proto>) -> Checked<u16> {
    let Some(service) = services::lookup(name) else {
        return Err(services::unknown(name));
    };
    match proto {
        Some(proto) if !service.uses(proto) => Err(Problem::new(format!(
            "service `{name}` does not use {}",
            proto.script_name()
        ))
        .hint(format!(
            "`{name}` is port {} over {}",
            service.port,
            service_protos(service)
        ))),
        _ => Ok(service.port),
    }
}

fn service_protos(service: &services::Service) -> String {
    service
        .protos()
        .iter()
        .map(|p| p.script_name())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Addresses: one or an array of IPv4/IPv6 addresses or CIDRs.
pub fn addresses(value: &Dynamic) -> Checked<Vec<IpNet>> {
    let items = one_or_many(value);
    if value.is_array() && items.is_empty() {
        return Err(Problem::new("the list of addresses is empty")
            .hint("an empty list would match nothing; name at least one address"));
    }
    let listed = value.is_array();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let within = |p: Problem| if listed { p.within(Step::Item(i)) } else { p };
            let what = if listed {
                "one of its addresses"
            } else {
                "its addresses"
            };
            let item = given(item, what).map_err(within)?;
            let text = item.read_lock::<rhai::ImmutableString>().ok_or_else(|| {
                within(Problem::new(format!(
                    "expected an address like \"203.0.113.7\" or \"2001:db8::/32\", found {}",
                    describe(item)
                )))
            })?;
            address(&text).map_err(within)
        })
        .collect()
}

pub fn address(text: &str) -> Checked<IpNet> {
    if let Some(net) = crate::plan::parse_v4(text) {
        return Ok(net);
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    if let Some((addr, prefix)) = text.split_once('/') {
        let addr: IpAddr = addr.parse().map_err(|_| not_an_address(text))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
            Problem::new(format!(
                "prefix length `/{prefix}` in `{text}` is out of range 0..{max}"
            ))
        })?;
        let net = IpNet::new(addr, prefix).map_err(|_| not_an_address(text))?;
        // iptables keeps only the network part; so do we, so `explain` agrees.
        return Ok(net.trunc());
    }
    Err(not_an_address(text))
}

fn not_an_address(text: &str) -> Problem {
    let hint = if text.chars().any(|c| c.is_ascii_alphabetic() && c != ':') && !text.contains(':') {
        "host names are not resolved; write the address"
    } else {
        "write an IPv4 or IPv6 address, optionally with a prefix: \"198.51.100.0/24\""
    };
    Problem::new(format!("`{text}` is not an IP address or CIDR")).hint(hint)
}

/// `host[:port]`, IPv6 in brackets when a port follows: `[2001:db8::5]:8080`.
pub fn endpoint(text: &str) -> Checked<Endpoint> {
    let bad = || {
        Problem::new(format!("`{text}` is not an address with an optional port"))
            .hint("write \"192.0.2.10:8080\", \"192.0.2.10\" or \"[2001:db8::10]:8080\"")
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else if text.matches(':').count() == 1 {
        let (host, port) = text.split_once(':').ok_or_else(bad)?;
        (host, Some(port))
    } else {
        (text, None)
    };
    let addr: IpAddr = host.parse().map_err(|_| bad())?;
    let port = match port {
        Some(port) => {
            let n: i64 = port.parse().map_err(|_| bad())?;
            Some(PortRange::single(port_number(n)?))
        }
        None => None,
    };
    Ok(Endpoint { addr, port })
}

/// Interface names reach the kernel as is: at most 15 bytes, and only the
/// characters Linux names are made of (a trailing `+` is iptables' wildcard).
pub fn iface(text: &str) -> Checked<String> {
    if text.is_empty() {
        return Err(Problem::new("interface name is empty"));
    }
    if text.len() > 15 {
        return Err(Problem::new(format!(
            "interface name `{text}` is longer than 15 characters"
        )));
    }
    let body = text.strip_suffix('+').unwrap_or(text);
    if let Some(bad) = body
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')))
    {
        return Err(Problem::new(format!(
            "interface name {text:?} contains {}",
            char_name(bad)
        ))
        .hint("interface names are letters, digits and `-_.@`, optionally ending in `+`"));
    }
    Ok(text.to_string())
}

/// Free text for comments and log prefixes: printable and visible (no
/// control, format or line-separator characters, which could forge log
/// lines or turn text around on screen), and no quote or backslash (either
/// could end the field in the restore file).
pub fn free_text(text: &str, what: &str, max: usize) -> Checked<String> {
    if let Some(bad) = text
        .chars()
        .find(|c| is_hidden(*c) || matches!(c, '"' | '\'' | '\\' | '`'))
    {
        return Err(
            Problem::new(format!("{what} {} contains {}", shown(text), char_name(bad))).hint(format!(
                "a {what} may not contain quotes, backslashes, or control, format or line-separator characters"
            )),
        );
    }
    if text.len() > max {
        return Err(Problem::new(format!(
            "{what} is {} bytes long; the most is {max}",
            text.len()
        )));
    }
    if text.trim().is_empty() {
        let hint = if what == "comment" {
            "leave `comment` out instead"
        } else {
            "the kernel refuses an empty log prefix; write one, like \"fw-drop: \""
        };
        return Err(Problem::new(format!("{what} is empty")).hint(hint));
    }
    Ok(text.to_string())
}

/// Text quoted for a message, every hidden character written as `\u{…}`
/// so the message itself shows what is there.
pub fn shown(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Characters that do not show as themselves: Unicode categories Cc
/// (control), Cf (format: bidi overrides, zero-width spaces, …), Zl and Zp
/// (line and paragraph separators).
pub fn is_hidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || is_format(c)
}

/// Unicode 15.1 category Cf.
fn is_format(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// Comments share the kernel's 256-byte field with the `fws:<id> ` tag.
pub const MAX_COMMENT: usize = 200;
/// The LOG target's prefix field holds 29 bytes.
pub const MAX_LOG_PREFIX: usize = 29;

fn char_name(c: char) -> String {
    match c {
        '\n' => "a newline".into(),
        '\r' => "a carriage return".into(),
        '\t' => "a tab".into(),
        ' ' => "a space".into(),
        '"' => "a double quote".into(),
        '\'' => "a single quote".into(),
        '\\' => "a backslash".into(),
        '\u{2028}' => "the line separator U+2028".into(),
        '\u{2029}' => "the paragraph separator U+2029".into(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c if is_format(c) => format!("the invisible format character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

/// A chain to jump to: an existing chain of someone else's, never one of
/// fwscript's own (it manages those) nor a built-in one.
pub fn jump_chain(name: &str) -> Checked<String> {
    if name.is_empty() || name.len() > MAX_CHAIN_NAME {
        return Err(Problem::new(format!(
            "chain name `{name}` must be 1 to {MAX_CHAIN_NAME} characters"
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(Problem::new(format!(
            "chain name {name:?} contains {}",
            char_name(bad)
        )));
    }
    if name.starts_with(OWNED_PREFIX) {
        return Err(
            Problem::new(format!("`{name}` is one of fwscript's own chains")).hint(
                "chains starting with `FWS-` are managed by fwscript; jump to a chain of your own",
            ),
        );
    }
    if crate::netfilter::Hook::parse_chain(name).is_some()
        || matches!(name, "ACCEPT" | "DROP" | "REJECT" | "RETURN" | "LOG")
    {
        return Err(Problem::new(format!("cannot jump to `{name}`"))
            .hint("use `action: \"accept\"` and friends for verdicts"));
    }
    Ok(name.to_string())
}

/// `"3/min"`: a count per second, minute, hour or day.
pub fn rate(text: &str) -> Checked<RateLimit> {
    let bad = || {
        Problem::new(format!("`{text}` is not a rate"))
            .hint("write a count per unit: \"3/min\", \"10/second\"")
    };
    let (count, unit) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => RateUnit::Second,
        "m" | "min" | "minute" => RateUnit::Minute,
        "h" | "hour" => RateUnit::Hour,
        "d" | "day" => RateUnit::Day,
        _ => return Err(bad()),
    };
    if count == 0 || count > 10_000 {
        return Err(Problem::new(format!(
            "rate count {count} is out of range 1..10000"
        )));
    }
    Ok(RateLimit {
        count,
        per,
        burst: None,
    })
}

/// An ICMP type by name or number, for the family `proto` implies.
pub fn icmp_type(value: &Dynamic, proto: Proto) -> Checked<IcmpType> {
    let family = proto.family().unwrap_or(Family::Ipv4);
    if let Ok(n) = value.as_int() {
        let number = u8::try_from(n)
            .map_err(|_| Problem::new(format!("icmp type {n} is out of range 0..255")))?;
        let name = icmp_types(family)
            .iter()
            .find(|(_, t)| *t == number)
            .map_or(n.to_string(), |(name, _)| name.to_string());
        return Ok(IcmpType { name, number });
    }
    let name = string(value, "`icmp_type`")?;
    let (canonical, number) = icmp_type_by_name(family, &name).ok_or_else(|| {
        let names: Vec<_> = icmp_types(family).iter().map(|(n, _)| *n).collect();
        Problem::new(format!("unknown {} type `{name}`", proto.script_name()))
            .hint(format!("one of: {}, or a number", names.join(", ")))
    })?;
    Ok(IcmpType {
        name: canonical.to_string(),
        number,
    })
}

pub fn family(value: &Dynamic) -> Checked<Family> {
    let text = string(value, "`family`")?;
    Family::parse(&text).ok_or_else(|| {
        Problem::new(format!("unknown family `{text}`")).hint("write \"ipv4\" or \"ipv6\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(text: &str) -> Checked<PortRange> {
        port_text(text, Some(Proto::Tcp))
    }

    #[test]
    fn ports_accept_numbers_ranges_and_services() {
        assert_eq!(port("80"), Ok(PortRange::single(80)));
        assert_eq!(
            port("6000:6010"),
            Ok(PortRange {
                first: 6000,
                last: 6010
            })
        );
        assert_eq!(port("imaps"), Ok(PortRange::single(993)));
        assert_eq!(
            port_text("dns", Some(Proto::Udp)),
            Ok(PortRange::single(53))
        );
        let list = ports(
            &Dynamic::from(vec![Dynamic::from(80_i64), Dynamic::from("https")]),
            Some(Proto::Tcp),
        );
        assert_eq!(
            list,
            Ok(vec![PortRange::single(80), PortRange::single(443)])
        );
    }

    #[test]
    fn ports_reject_what_iptables_would() {
        assert_eq!(
            port_number(0).unwrap_err().message,
            "port 0 is out of range 1..65535"
        );
        assert_eq!(
            port_number(70000).unwrap_err().message,
            "port 70000 is out of range 1..65535"
        );
        assert_eq!(
            port("eighty").unwrap_err().message,
            "unknown service `eighty`"
        );
        assert_eq!(
            port("10:5").unwrap_err().message,
            "port range \"10:5\" runs backwards"
        );
        assert_eq!(
            port_text("ntp", Some(Proto::Tcp)).unwrap_err().message,
            "service `ntp` does not use tcp"
        );
        assert!(ports(&Dynamic::from(rhai::Array::new()), None).is_err());
        let err = ports(&Dynamic::from(true), None).unwrap_err();
        assert!(err.message.contains("found `true`"), "{}", err.message);
    }

    #[test]
    fn addresses_are_checked_and_normalised() {
        assert_eq!(
            address("203.0.113.7").unwrap().to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(
            address("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(address("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            address("300.1.2.3").unwrap_err().message,
            "`300.1.2.3` is not an IP address or CIDR"
        );
        assert_eq!(
            address("10.0.0.0/33").unwrap_err().message,
            "prefix length `/33` in `10.0.0.0/33` is out of range 0..32"
        );
        assert!(address("example.com")
            .unwrap_err()
            .hint
            .unwrap()
            .contains("not resolved"));
    }

    #[test]
    fn endpoints_take_optional_ports() {
        assert_eq!(
            endpoint("192.0.2.10:8080").unwrap().to_string(),
            "192.0.2.10:8080"
        );
        assert_eq!(endpoint("192.0.2.10").unwrap().to_string(), "192.0.2.10");
        assert_eq!(
            endpoint("[2001:db8::10]:8080").unwrap().to_string(),
            "[2001:db8::10]:8080"
        );
        assert_eq!(
            endpoint("2001:db8::10").unwrap().to_string(),
            "2001:db8::10"
        );
        assert!(endpoint("host:80").is_err());
        assert!(endpoint("192.0.2.10:99999").is_err());
    }

    #[test]
    fn text_that_could_escape_its_field_is_refused() {
        assert!(iface("eth0").is_ok());
        assert!(iface("veth+").is_ok());
        assert!(iface("averyverylongname0")
            .unwrap_err()
            .message
            .contains("longer than 15"));
        assert!(iface("eth 0").unwrap_err().message.contains("a space"));
        assert!(iface("eth\"0")
            .unwrap_err()
            .message
            .contains("double quote"));
        assert!(free_text("web", "comment", MAX_COMMENT).is_ok());
        assert!(free_text("a\"b", "comment", MAX_COMMENT)
            .unwrap_err()
            .message
            .contains("double quote"));
        assert!(free_text("a\nb", "log prefix", MAX_LOG_PREFIX)
            .unwrap_err()
            .message
            .contains("newline"));
        assert!(free_text(&"x".repeat(30), "log prefix", MAX_LOG_PREFIX).is_err());
        assert!(jump_chain("f2b-sshd").is_ok());
        assert!(jump_chain("FWS-INPUT").is_err());
        assert!(jump_chain("bad chain").is_err());
    }

    #[test]
    fn rates_and_icmp_types() {
        assert_eq!(
            rate("3/min").unwrap(),
            RateLimit {
                count: 3,
                per: RateUnit::Minute,
                burst: None
            }
        );
        assert!(rate("fast").is_err());
        let t = icmp_type(&Dynamic::from("echo-request"), Proto::Icmp).unwrap();
        assert_eq!(t.number, 8);
        let t = icmp_type(&Dynamic::from("neighbor-solicitation"), Proto::Icmpv6).unwrap();
        assert_eq!(t.name, "neighbour-solicitation");
        assert!(icmp_type(&Dynamic::from("packet-too-big"), Proto::Icmp).is_err());
    }
}
