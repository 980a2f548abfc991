//! Better answers to bad usage than clap's own: a misspelt flag is matched with
//! transpositions in mind (`--dsn` → `--dns`, where clap offers `--json`), and a
//! name given without its flag (`issue device a.b`) gets the flag it needs.

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// The text to print instead of clap's for an unknown argument, when we have a
/// better tip; `None` keeps clap's.
pub fn usage_hint(e: &clap::Error, argv: &[String]) -> Option<String> {
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let bad = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => return None,
    };
    let mut root = super::help::command();
    root.build();
    let cmd = command_of(&root, argv);
    let tip = if let Some(flag) = bad.strip_prefix("--") {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (flag, None),
        };
        let value = inline.or_else(|| value_after(argv, &bad));
        match synonym_tip(cmd, flag, value.as_deref()) {
            Some(tip) => tip,
            None => {
                let best = cmd
                    .get_arguments()
                    .chain(root.get_arguments())
                    .filter(|a| !a.is_hide_set())
                    .filter_map(|a| a.get_long().map(|l| (l, a)))
                    .map(|(l, a)| (edit_distance(flag, l), l, a))
                    .filter(|(d, l, _)| *d <= 2 && *d < l.len())
                    .min_by_key(|(d, _, _)| *d)?;
                let (_, long, _) = best;
                let value = match bad.split_once('=') {
                    Some((_, v)) => format!("={v}"),
                    None => String::new(),
                };
                format!("a similar argument exists: '--{long}{value}'")
            }
        }
    } else if let Some(tip) = span_in_two_words(cmd, argv, &bad) {
        tip
    } else if !bad.starts_with('-') && takes_names(cmd) {
        let flag = name_flag(&bad);
        format!(
            "names are given with a flag: {} {} {flag} {bad}",
            cmd.get_bin_name().unwrap_or("mtlsca"),
            positional_of(argv, cmd).unwrap_or_else(|| "PROFILE".into())
        )
    } else {
        return None;
    };
    let usage = cmd.clone().render_usage().to_string();
    Some(format!(
        "error: unexpected argument '{bad}' found\n\n  tip: {tip}\n\n{usage}\n\nFor more information, try '--help'.\n"
    ))
}

/// Flags other tools take for a span of time (`--days 30`): what mtlsca
/// calls a validity, a CRL's next update, or a window.
const SPAN_WORDS: &[&str] = &[
    "days",
    "day",
    "valid",
    "valid-days",
    "validity-days",
    "valid-for",
    "validfor",
    "expire",
    "expires",
    "expiry",
    "expiration",
    "expire-in",
    "expires-in",
    "lifetime",
    "duration",
    "ttl",
    "period",
    "hours",
    "weeks",
    "years",
    "not-valid-after",
    "enddate",
    "end-date",
];

/// mtlsca's flags that take a span, in the order they are offered.
const SPAN_FLAGS: &[&str] = &["validity", "next-update", "expiring-within", "renew-within"];

/// Flags other tools take for a subject alternative name.
const NAME_WORDS: &[&str] = &[
    "host",
    "hostname",
    "hostnames",
    "hosts",
    "domain",
    "domains",
    "fqdn",
    "dns-name",
    "dnsname",
    "server-name",
    "servername",
    "subject-alt-name",
    "subjectaltname",
    "alt-name",
    "altname",
    "sans",
    "name",
    "names",
];

/// Other flags by the names other tools give them: the words and mtlsca's flag.
const FLAG_WORDS: &[(&[&str], &str)] = &[
    (
        &["ip-address", "ipaddr", "ip-addr", "ips", "address", "addr"],
        "ip",
    ),
    (&["mail", "e-mail", "emails", "email-address"], "email"),
    (&["url", "urls", "uris", "spiffe", "spiffe-id"], "uri"),
    (&["common-name", "commonname", "subject", "subj"], "cn"),
    (
        &[
            "organization",
            "organisation",
            "organization-name",
            "o",
            "company",
        ],
        "org",
    ),
    (
        &[
            "algorithm",
            "algo",
            "key-algorithm",
            "key-alg",
            "keytype",
            "curve",
            "newkey",
        ],
        "key-type",
    ),
    (
        &[
            "output",
            "outfile",
            "out-file",
            "output-file",
            "prefix",
            "cert-out",
        ],
        "out",
    ),
    (&["idempotency-key", "id"], "request-id"),
];

/// Whether the command has this long flag.
fn has_flag(cmd: &clap::Command, long: &str) -> bool {
    cmd.get_arguments().any(|a| a.get_long() == Some(long))
}

/// The value given with an unknown flag (`--days 30`, `--days=30`), if any.
fn value_after(argv: &[String], flag: &str) -> Option<String> {
    let inline = format!("{flag}=");
    let i = argv
        .iter()
        .position(|a| a == flag || a.starts_with(&inline))?;
    match argv[i].strip_prefix(&inline) {
        Some(v) => Some(v.to_string()),
        None => argv.get(i + 1).filter(|v| !v.starts_with('-')).cloned(),
    }
}

/// A tip for a flag another tool would take: `--days 30` is `--validity 30d`,
/// `--host NAME` is `--dns NAME`; `None` when the word is not one of those (or
/// the command has no such flag).
fn synonym_tip(cmd: &clap::Command, flag: &str, value: Option<&str>) -> Option<String> {
    let word = flag.to_ascii_lowercase();
    let word = word.as_str();
    if SPAN_WORDS.contains(&word) {
        // A point in time goes to --not-after.
        if let Some(v) = value.filter(|v| looks_like_a_date(v)) {
            if has_flag(cmd, "not-after") {
                return Some(format!(
                    "a time to expire at is given with --not-after: '--not-after {v}'"
                ));
            }
        }
        let target = SPAN_FLAGS.iter().find(|f| has_flag(cmd, f))?;
        let unit = match word {
            "hours" => "h",
            "weeks" => "w",
            "years" => "y",
            _ => "d",
        };
        let span = match value {
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                format!("{v}{unit}")
            }
            Some(v) if crate::profile::Validity::parse(v).is_ok() => v.to_string(),
            _ => format!("30{unit}"),
        };
        return Some(format!(
            "a span is one value, a number and its unit (s, m, h, d, w or y): '--{target} {span}'"
        ));
    }
    if NAME_WORDS.contains(&word) && takes_names(cmd) {
        let (flag, value) = match value {
            Some(v) => (name_flag(v), v),
            None => ("--dns", "NAME"),
        };
        return Some(format!(
            "names are given with --dns, --ip, --uri or --email: '{flag} {value}'"
        ));
    }
    let (_, target) = FLAG_WORDS
        .iter()
        .find(|(words, target)| words.contains(&word) && has_flag(cmd, target))?;
    Some(match value {
        Some(v) => format!("this is --{target} here: '--{target} {v}'"),
        None => format!("this is --{target} here: '--{target}'"),
    })
}

/// A date or time rather than a span: `2027-01-31`, `2027-01-31T00:00:00Z`.
fn looks_like_a_date(v: &str) -> bool {
    v.len() >= 8
        && v.as_bytes()[0].is_ascii_digit()
        && v.contains('-')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-:.+".contains(&b))
}

/// A span written as two words (`--validity 5 years`): clap takes `5` as the
/// value and `years` as a stray argument. The tip spells the span as one value.
fn span_in_two_words(cmd: &clap::Command, argv: &[String], bad: &str) -> Option<String> {
    let (unit, days) = match bad.to_ascii_lowercase().as_str() {
        "y" | "yr" | "yrs" | "year" | "years" => (Some("y"), 365),
        "month" | "months" | "mo" | "mon" => (None, 30),
        "w" | "wk" | "wks" | "week" | "weeks" => (Some("w"), 7),
        "d" | "day" | "days" => (Some("d"), 1),
        "h" | "hr" | "hrs" | "hour" | "hours" => (Some("h"), 0),
        "min" | "mins" | "minute" | "minutes" => (Some("m"), 0),
        "s" | "sec" | "secs" | "second" | "seconds" => (Some("s"), 0),
        _ => return None,
    };
    let i = argv.iter().rposition(|a| a == bad).filter(|i| *i >= 1)?;
    // `--validity 5 years` or `--validity=5 years`.
    let (flag, n) = match argv[i - 1].split_once('=') {
        Some((f, n)) => (f.to_string(), n.to_string()),
        None if i >= 2 => (argv[i - 2].clone(), argv[i - 1].clone()),
        None => return None,
    };
    let long = flag.strip_prefix("--")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || !has_flag(cmd, long) {
        return None;
    }
    let n: u64 = n.parse().ok()?;
    let in_days = (days > 0).then(|| format!("{}d", n.saturating_mul(days)));
    let example = match (unit, &in_days) {
        (Some("d"), _) | (Some(_), None) => format!("'--{long} {n}{}'", unit.unwrap_or("d")),
        (Some(u), Some(d)) => format!("'--{long} {n}{u}' (or '--{long} {d}')"),
        (None, Some(d)) => format!("'--{long} {d}' (there is no month unit)"),
        (None, None) => return None,
    };
    Some(format!(
        "a span is one value, a number and its unit (s, m, h, d, w or y): {example}"
    ))
}

/// Bad usage as one line, for `--json` (the JSON `message`, and the one
/// `error:` line on stderr): clap's error line and our tip, without the usage
/// block.
pub fn usage_message(e: &clap::Error, argv: &[String]) -> String {
    let text = usage_hint(e, argv).unwrap_or_else(|| e.render().to_string());
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("error: "))
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim_start_matches("error: ").trim())
        .collect();
    let mut message = vec![block.join(" ")];
    message.extend(
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix("tip: "))
            .map(String::from),
    );
    message.retain(|m| !m.is_empty());
    if !message.is_empty() {
        return message.join("; ");
    }
    // A command that needs a subcommand prints its help instead of an error.
    let mut root = super::help::command();
    root.build();
    let cmd = command_of(&root, argv);
    let subs: Vec<&str> = cmd
        .get_subcommands()
        .map(|s| s.get_name())
        .filter(|n| *n != "help")
        .collect();
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand && !subs.is_empty() {
        return format!(
            "'{}' needs a subcommand: {}",
            cmd.get_bin_name().unwrap_or("mtlsca"),
            subs.join(", ")
        );
    }
    match e.kind().as_str() {
        Some(k) => k.to_string(),
        None => "bad usage (see --help)".to_string(),
    }
}

/// The (nested) subcommand the arguments name, or the root.
fn command_of<'c>(root: &'c clap::Command, argv: &[String]) -> &'c clap::Command {
    let mut cmd = root;
    for a in argv.iter().skip(1) {
        if a.starts_with('-') {
            continue;
        }
        match cmd.find_subcommand(a) {
            Some(sub) => cmd = sub,
            None if cmd.has_subcommands() => continue,
            None => break,
        }
    }
    cmd
}

/// Whether the command takes names as --dns/--ip/--uri/--email.
fn takes_names(cmd: &clap::Command) -> bool {
    cmd.get_arguments().any(|a| a.get_long() == Some("dns"))
}

/// The first positional value after the command's name (the profile of `issue`).
fn positional_of(argv: &[String], cmd: &clap::Command) -> Option<String> {
    let pos = argv.iter().position(|a| a == cmd.get_name())?;
    argv.iter()
        .skip(pos + 1)
        .find(|a| !a.starts_with('-'))
        .cloned()
}

/// The flag a bare name belongs to.
fn name_flag(v: &str) -> &'static str {
    if v.contains("://") {
        "--uri"
    } else if v.contains('@') {
        "--email"
    } else if v.parse::<std::net::IpAddr>().is_ok() {
        "--ip"
    } else {
        "--dns"
    }
}

/// Another spelling of a built-in profile's name that stands for it: the
/// British `organisation` for the profile `organization` (`init` writes the
/// American spelling, which the rest of X.509 uses).
pub fn profile_spelling(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "organisation" => Some("organization"),
        _ => None,
    }
}

/// What other tools call the certificates of mtlsca's built-in profiles: the
/// words, the profile they mean, and why.
const PROFILE_WORDS: &[(&[&str], &str, &str)] = &[
    (
        &[
            "server", "servers", "tls-server", "tls_server", "serverauth", "host", "hostname",
            "web", "webserver", "web-server", "https", "service", "machine", "node",
        ],
        "device",
        "a TLS server's certificate (serverAuth) is a device certificate here, named by its DNS names or IPs",
    ),
    (
        &["client", "clients", "tls-client", "tls_client", "clientauth"],
        "person",
        "a client certificate (clientAuth) belongs to a person here (`person`, or `organization` for an organisation); a service that connects to other services uses a `device` certificate",
    ),
    (
        &["user", "users", "human", "people", "individual", "employee", "email", "smime", "s-mime", "mail"],
        "person",
        "a person's certificate is clientAuth, named by an email address",
    ),
    (
        &["org", "orga", "company", "organizational", "organisational", "team", "business"],
        "organization",
        "an organisation's certificate is clientAuth, named by its organizationName",
    ),
    (
        &["spiffe", "svid", "x509-svid", "pod", "k8s", "kubernetes", "microservice"],
        "workload",
        "a workload identity is a device certificate named by a SPIFFE ID (URI)",
    ),
];

/// A suggestion for a profile name the CA does not have: what other tools'
/// word means here, the same name in another case, or the nearest name (a
/// typo). `known` are the CA's profile names; a suggested profile must be one
/// of them (any built-in one when `known` is empty).
pub fn profile_suggestion(name: &str, known: &[String]) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let exists = |p: &str| known.is_empty() || known.iter().any(|k| k == p);
    if let Some((_, profile, why)) = PROFILE_WORDS
        .iter()
        .find(|(words, profile, _)| words.contains(&lower.as_str()) && exists(profile))
    {
        return Some(format!("did you mean `{profile}`? {why}"));
    }
    let builtins: Vec<String>;
    let known = if known.is_empty() {
        builtins = crate::profile::BUILTIN
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        &builtins
    } else {
        known
    };
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| *d <= 2 && *d < k.len().min(lower.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!("did you mean `{k}`?"))
}

/// Optimal string alignment distance: edits, with a swap of two neighbours
/// counting as one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_are_one_edit() {
        assert_eq!(edit_distance("dsn", "dns"), 1);
        assert_eq!(edit_distance("dsn", "json"), 2);
        assert_eq!(edit_distance("valdity", "validity"), 1);
        assert_eq!(name_flag("10.0.0.1"), "--ip");
        assert_eq!(name_flag("a@b.c"), "--email");
        assert_eq!(name_flag("spiffe://x/y"), "--uri");
        assert_eq!(name_flag("a.b"), "--dns");
    }
}
