//! A small stub resolver for the ACME validator (RFC 1035 wire format): A, AAAA
//! and TXT questions sent to one recursive resolver over UDP, retried over TCP
//! when the answer is truncated; CNAME chains in the answer are followed.
//!
//! Why ours and not a crate: the validator asks three kinds of question of one
//! configured recursive server and needs hard bounds on everything (time,
//! answer size, records used, chain length); that is a few hundred lines of
//! parsing that never allocates more than one message, against a dependency
//! tree of some twenty crates (hickory) to compile on every machine.
//!
//! Bounds: each attempt times out after [`ATTEMPT_TIMEOUT`]; two attempts per
//! server; an answer is at most 65,535 bytes (UDP or TCP, [`MAX_UDP`] advertised);
//! at most [`MAX_RECORDS`] records are read from an answer and at most
//! [`MAX_CNAMES`] CNAMEs followed. Answers are matched on id, question and
//! source address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ring::rand::SecureRandom;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Time allowed for one question to one server (one attempt).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// The UDP answer size advertised with EDNS(0) (larger datagrams are still read).
pub const MAX_UDP: usize = 1232;
/// Records read from one answer at most.
pub const MAX_RECORDS: usize = 64;
/// CNAMEs followed at most.
pub const MAX_CNAMES: usize = 8;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_TXT: u16 = 16;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The name cannot be put in a DNS question.
    #[error("`{0}` is not a name that can be looked up")]
    BadName(String),
    /// The name does not exist (NXDOMAIN).
    #[error("`{0}` does not exist (NXDOMAIN)")]
    NoSuchName(String),
    /// The server answered with an error code.
    #[error("the resolver answered {rcode} for `{name}`")]
    Server {
        /// The name asked for.
        name: String,
        /// The response code (SERVFAIL, REFUSED, ...).
        rcode: &'static str,
    },
    /// No usable answer from any server (timeouts, network errors, bad answers).
    #[error("no answer for `{name}`: {detail}")]
    NoAnswer {
        /// The name asked for.
        name: String,
        /// What happened on the last attempt.
        detail: String,
    },
}

/// Where lookups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
}

impl Resolver {
    /// A resolver asking the recursive server at `server`.
    pub fn at(server: SocketAddr) -> Resolver {
        Resolver {
            servers: vec![server],
        }
    }

    /// The system's recursive servers: the `nameserver` lines of
    /// /etc/resolv.conf (at most three, port 53), else 127.0.0.1:53.
    pub fn system() -> Resolver {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Resolver::from_resolv_conf(&text)
    }

    /// The servers named in resolv.conf text.
    pub fn from_resolv_conf(text: &str) -> Resolver {
        let mut servers: Vec<SocketAddr> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("nameserver")).then(|| w.next()).flatten()
            })
            // A scoped IPv6 address (fe80::1%eth0) is not parsed: skipped.
            .filter_map(|a| a.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .take(3)
            .collect();
        if servers.is_empty() {
            servers.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53));
        }
        Resolver { servers }
    }

    /// The servers asked, in order.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// The IPv4 and IPv6 addresses of `name` (CNAMEs followed); empty when the
    /// name exists without addresses.
    pub async fn lookup_ip(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let (v4, v6) = tokio::join!(self.query(name, TYPE_A), self.query(name, TYPE_AAAA));
        let mut out = Vec::new();
        let mut first_err = None;
        for r in [v4, v6] {
            match r {
                Ok(rdatas) => {
                    for d in rdatas {
                        match d.len() {
                            4 => out.push(IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3]))),
                            16 => {
                                let mut b = [0u8; 16];
                                b.copy_from_slice(&d);
                                out.push(IpAddr::V6(Ipv6Addr::from(b)));
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// The TXT records of `name` (CNAMEs followed), each record's strings
    /// joined; empty when the name has none or does not exist.
    pub async fn lookup_txt(&self, name: &str) -> Result<Vec<Vec<u8>>, DnsError> {
        let rdatas = match self.query(name, TYPE_TXT).await {
            Err(DnsError::NoSuchName(_)) => return Ok(Vec::new()),
            r => r?,
        };
        Ok(rdatas.iter().filter_map(|d| txt_strings(d)).collect())
    }

    /// Ask every server in turn (two attempts each) until one answers.
    async fn query(&self, name: &str, qtype: u16) -> Result<Vec<Vec<u8>>, DnsError> {
        let qname = encode_name(name).ok_or_else(|| DnsError::BadName(printable(name)))?;
        let mut last = String::from("no server configured");
        for server in &self.servers {
            for _ in 0..2 {
                let id = random_id();
                let msg = question(id, &qname, qtype);
                let answer = tokio::time::timeout(
                    ATTEMPT_TIMEOUT,
                    exchange(*server, &msg, id, &qname, qtype),
                )
                .await;
                match answer {
                    Ok(Ok(reply)) => return interpret(&reply, name, &qname, qtype),
                    Ok(Err(e)) => last = format!("{server}: {e}"),
                    Err(_) => last = format!("{server}: timed out"),
                }
            }
        }
        Err(DnsError::NoAnswer {
            name: printable(name),
            detail: last,
        })
    }
}

fn printable(s: &str) -> String {
    crate::names::printable(&s.chars().take(300).collect::<String>())
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // The system RNG failing leaves id 0; answers are still matched on question.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u16::from_be_bytes(b)
}

/// `name` as DNS labels (lowercase; a trailing dot allowed), or None when a
/// label is empty or over 63 bytes or the whole over 255.
fn encode_name(name: &str) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || !label.is_ascii() {
            return None;
        }
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

/// A query: recursion desired, one question, an EDNS(0) OPT record.
fn question(id: u16, qname: &[u8], qtype: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(12 + qname.len() + 4 + 11);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00]); // RD
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]); // 1 question, 1 additional
    m.extend_from_slice(qname);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    // OPT: root name, type 41, UDP size, extended rcode/version/flags 0, no data.
    m.push(0);
    m.extend_from_slice(&TYPE_OPT.to_be_bytes());
    m.extend_from_slice(&(MAX_UDP as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    m
}

/// One exchange: UDP, then TCP when the UDP answer is truncated.
async fn exchange(
    server: SocketAddr,
    msg: &[u8],
    id: u16,
    qname: &[u8],
    qtype: u16,
) -> Result<Vec<u8>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    // connect(): the kernel drops datagrams from any other source.
    sock.connect(server).await.map_err(|e| e.to_string())?;
    sock.send(msg).await.map_err(|e| e.to_string())?;
    // Room for any datagram: a server that ignores the EDNS size is still read whole.
    let mut buf = vec![0u8; 65_535];
    let reply = loop {
        let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // Not ours (another id or question): keep waiting until the timeout.
        if matches_question(&buf[..n], id, qname, qtype) {
            break buf[..n].to_vec();
        }
    };
    if reply[2] & 0x02 == 0 {
        return Ok(reply);
    }
    // Truncated: ask again over TCP (2-byte length prefix).
    let mut tcp = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    tcp.write_all(&framed).await.map_err(|e| e.to_string())?;
    let len = tcp.read_u16().await.map_err(|e| e.to_string())? as usize;
    let mut reply = vec![0u8; len];
    tcp.read_exact(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    if !matches_question(&reply, id, qname, qtype) {
        return Err("the TCP answer does not match the question".into());
    }
    Ok(reply)
}

/// A response (QR set) with our id and exactly our question.
fn matches_question(m: &[u8], id: u16, qname: &[u8], qtype: u16) -> bool {
    if m.len() < 12 || u16::from_be_bytes([m[0], m[1]]) != id || m[2] & 0x80 == 0 {
        return false;
    }
    if u16::from_be_bytes([m[4], m[5]]) != 1 {
        return false;
    }
    let end = 12 + qname.len();
    let Some(q) = m.get(12..end + 4) else {
        return false;
    };
    q[..qname.len()].eq_ignore_ascii_case(qname)
        && q[qname.len()..] == [(qtype >> 8) as u8, qtype as u8, 0, CLASS_IN as u8]
}

/// The rdata of the records of `qtype` for `name`, following CNAMEs in the answer.
fn interpret(m: &[u8], name: &str, qname: &[u8], qtype: u16) -> Result<Vec<Vec<u8>>, DnsError> {
    if m.len() < 12 {
        return Err(DnsError::NoAnswer {
            name: printable(name),
            detail: "malformed answer (short header)".into(),
        });
    }
    let rcode = m[3] & 0x0f;
    match rcode {
        0 => {}
        3 => return Err(DnsError::NoSuchName(printable(name))),
        _ => {
            return Err(DnsError::Server {
                name: printable(name),
                rcode: match rcode {
                    1 => "FORMERR",
                    2 => "SERVFAIL",
                    4 => "NOTIMP",
                    5 => "REFUSED",
                    _ => "an error",
                },
            })
        }
    }
    let bad = |what: &str| DnsError::NoAnswer {
        name: printable(name),
        detail: format!("malformed answer ({what})"),
    };
    let ancount = u16::from_be_bytes([m[6], m[7]]) as usize;
    let mut pos = 12 + qname.len() + 4;
    let mut records: Vec<(Vec<u8>, u16, Vec<u8>)> = Vec::new();
    for _ in 0..ancount.min(MAX_RECORDS) {
        let (owner, next) = read_name(m, pos).ok_or_else(|| bad("owner name"))?;
        let head = m.get(next..next + 10).ok_or_else(|| bad("record header"))?;
        let typ = u16::from_be_bytes([head[0], head[1]]);
        let class = u16::from_be_bytes([head[2], head[3]]);
        let len = u16::from_be_bytes([head[8], head[9]]) as usize;
        let start = next + 10;
        let rdata = m
            .get(start..start + len)
            .ok_or_else(|| bad("record data"))?;
        pos = start + len;
        if class != CLASS_IN {
            continue;
        }
        let rdata = if typ == TYPE_CNAME {
            // The target may be compressed: decode it against the message.
            read_name(m, start).ok_or_else(|| bad("CNAME target"))?.0
        } else {
            rdata.to_vec()
        };
        records.push((owner, typ, rdata));
    }
    let mut current = qname.to_ascii_lowercase();
    for _ in 0..=MAX_CNAMES {
        let found: Vec<Vec<u8>> = records
            .iter()
            .filter(|(o, t, _)| *t == qtype && *o == current)
            .map(|(_, _, d)| d.clone())
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
        match records
            .iter()
            .find(|(o, t, _)| *t == TYPE_CNAME && *o == current)
        {
            Some((_, _, target)) => current = target.clone(),
            None => return Ok(Vec::new()),
        }
    }
    Err(bad("CNAME chain too long"))
}

/// A (possibly compressed) name at `pos`, as lowercase wire labels, and the
/// position after it in the record.
fn read_name(m: &[u8], mut pos: usize) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut after = None;
    let mut jumps = 0;
    loop {
        let len = *m.get(pos)? as usize;
        match len & 0xc0 {
            0x00 => {
                out.push(len as u8);
                if len == 0 {
                    return Some((out, after.unwrap_or(pos + 1)));
                }
                let label = m.get(pos + 1..pos + 1 + len)?;
                out.extend(label.iter().map(u8::to_ascii_lowercase));
                if out.len() > 255 {
                    return None;
                }
                pos += 1 + len;
            }
            0xc0 => {
                let target = ((len & 0x3f) << 8) | *m.get(pos + 1)? as usize;
                after.get_or_insert(pos + 2);
                jumps += 1;
                // Pointers go backwards; a bound on jumps stops any loop.
                if jumps > 32 || target >= pos {
                    return None;
                }
                pos = target;
            }
            _ => return None,
        }
    }
}

/// A TXT record's character-strings joined (RFC 8555 §8.4 compares the whole).
fn txt_strings(d: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(d.len());
    let mut i = 0;
    while i < d.len() {
        let n = d[i] as usize;
        out.extend_from_slice(d.get(i + 1..i + 1 + n)?);
        i += 1 + n;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `q` with the given records (owner as wire name, type, rdata).
    fn answer(q: &[u8], rcode: u8, records: &[(Vec<u8>, u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = q[..12].to_vec();
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        m[10] = 0;
        m[11] = 0;
        // The question (without the OPT record).
        let qend = 12 + q[12..].iter().position(|&b| b == 0).unwrap() + 1 + 4;
        m.extend_from_slice(&q[12..qend]);
        for (owner, typ, rdata) in records {
            m.extend_from_slice(owner);
            m.extend_from_slice(&typ.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
        m
    }

    #[test]
    fn names_are_encoded_lowercase_and_bounded() {
        assert_eq!(encode_name("A.b.").unwrap(), b"\x01a\x01b\x00");
        assert!(encode_name("a..b").is_none());
        assert!(encode_name("").is_none());
        assert!(encode_name(&"x".repeat(64)).is_none());
        assert!(encode_name(&["abc"; 80].join(".")).is_none());
    }

    #[test]
    fn a_cname_chain_is_followed_with_compressed_names() {
        let qname = encode_name("www.example.test").unwrap();
        let q = question(7, &qname, TYPE_A);
        // Answer: www CNAME -> pointer to "example.test" in the question, then its A.
        let target_ptr = vec![0xc0, 12 + 4]; // "example.test" starts after "\x03www"
        let owner_ptr = vec![0xc0, 12];
        let mut m = answer(
            &q,
            0,
            &[
                (owner_ptr, TYPE_CNAME, target_ptr.clone()),
                (target_ptr, TYPE_A, vec![127, 0, 0, 1]),
            ],
        );
        assert!(matches_question(&m, 7, &qname, TYPE_A));
        assert!(!matches_question(&m, 8, &qname, TYPE_A));
        assert!(!matches_question(&m, 7, &qname, TYPE_AAAA));
        let got = interpret(&m, "www.example.test", &qname, TYPE_A).unwrap();
        assert_eq!(got, vec![vec![127, 0, 0, 1]]);
        // A pointer loop is an error, never a hang.
        let n = m.len();
        m.extend_from_slice(&[0xc0, n as u8]);
        assert!(read_name(&m, n).is_none());
    }

    #[test]
    fn nxdomain_and_errors_and_txt_strings() {
        let qname = encode_name("_acme-challenge.x.test").unwrap();
        let q = question(1, &qname, TYPE_TXT);
        let m = answer(&q, 3, &[]);
        assert!(matches!(
            interpret(&m, "x", &qname, TYPE_TXT),
            Err(DnsError::NoSuchName(_))
        ));
        let m = answer(&q, 2, &[]);
        assert!(matches!(
            interpret(&m, "x", &qname, TYPE_TXT),
            Err(DnsError::Server {
                rcode: "SERVFAIL",
                ..
            })
        ));
        let m = answer(
            &q,
            0,
            &[(qname.clone(), TYPE_TXT, b"\x03abc\x02de".to_vec())],
        );
        let got: Vec<_> = interpret(&m, "x", &qname, TYPE_TXT)
            .unwrap()
            .iter()
            .filter_map(|d| txt_strings(d))
            .collect();
        assert_eq!(got, vec![b"abcde".to_vec()]);
        assert!(txt_strings(b"\x05ab").is_none());
        // A record cut short is a malformed answer, not a panic.
        let mut cut = m.clone();
        cut.truncate(cut.len() - 2);
        assert!(interpret(&cut, "x", &qname, TYPE_TXT).is_err());
    }

    #[test]
    fn resolv_conf_servers() {
        let r = Resolver::from_resolv_conf(
            "# comment\nsearch x\nnameserver 10.0.0.2\nnameserver ::1\nnameserver fe80::1%eth0\n",
        );
        assert_eq!(
            r.servers(),
            &[
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(
            Resolver::from_resolv_conf("").servers(),
            &["127.0.0.1:53".parse::<SocketAddr>().unwrap()]
        );
    }

    /// A server that answers UDP with TC set and the full answer over TCP on
    /// the same port: the client asks again over TCP and reads the records.
    #[test]
    fn a_truncated_answer_is_asked_again_over_tcp() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = tcp.local_addr().unwrap();
            let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
            let full = |q: &[u8]| {
                let qname = encode_name("_acme-challenge.t.test").unwrap();
                let mut a = answer(q, 0, &[(qname, TYPE_TXT, b"\x05right".to_vec())]);
                a[2] &= !0x02;
                a
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let (n, from) = udp.recv_from(&mut buf).await.unwrap();
                let mut a = full(&buf[..n]);
                a[2] |= 0x02; // TC, and no records
                a[6] = 0;
                a[7] = 0;
                let qend = 12 + buf[12..n].iter().position(|&b| b == 0).unwrap() + 1 + 4;
                a.truncate(qend);
                udp.send_to(&a, from).await.unwrap();
            });
            tokio::spawn(async move {
                let (mut s, _) = tcp.accept().await.unwrap();
                let len = s.read_u16().await.unwrap() as usize;
                let mut q = vec![0u8; len];
                s.read_exact(&mut q).await.unwrap();
                let a = full(&q);
                let mut framed = (a.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&a);
                s.write_all(&framed).await.unwrap();
            });
            let got = Resolver::at(addr)
                .lookup_txt("_acme-challenge.t.test")
                .await
                .unwrap();
            assert_eq!(got, vec![b"right".to_vec()]);
        });
    }
}
