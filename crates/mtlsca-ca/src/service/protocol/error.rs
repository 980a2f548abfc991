//! Errors as they travel: their kind and their refusals, so that a command run
//! through the server prints the same `error:` line, JSON error and exit code
//! as a local run. Refusals travel as the rulebook spells them to users: rule
//! codes, field names and origins, never as the rulebook's Rust types.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::rules::{Field, Origin, Refusal, Refusals, Rule};

/// What was received does not read as the protocol's types (an unknown rule
/// code, field or origin; a path a request may not hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Malformed {}

/// An [`Error`] as it travels: its kind, its refusals or message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum WireError {
    /// [`Error::Refused`].
    Refused {
        /// The refusals.
        refusals: WireRefusals,
    },
    /// [`Error::Invalid`].
    Invalid {
        /// The refusals.
        refusals: WireRefusals,
    },
    /// [`Error::Usage`].
    Usage {
        /// The message.
        message: String,
    },
    /// [`Error::Input`].
    Input {
        /// What was read.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// [`Error::State`].
    State {
        /// The message.
        message: String,
    },
    /// [`Error::Io`].
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        message: String,
    },
    /// [`Error::Store`].
    Store {
        /// The message.
        message: String,
    },
}

/// [`Refusals`] as they travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRefusals {
    /// How the request was made ([`Origin::as_str`]).
    pub origin: String,
    /// Every rule the request breaks.
    pub reasons: Vec<WireRefusal>,
    /// What was refused, when the message must say it.
    pub context: Option<String>,
}

/// A [`Refusal`] as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRefusal {
    /// The rule's code ([`Rule::code`]).
    pub rule: String,
    /// The field's name ([`Field::name`]).
    pub field: Option<String>,
    /// The value at fault, printable.
    pub value: Option<String>,
    /// What is wrong.
    pub detail: String,
    /// Which entry of several.
    pub entry: Option<String>,
}

impl From<&Refusals> for WireRefusals {
    fn from(r: &Refusals) -> WireRefusals {
        let Refusals {
            origin,
            reasons,
            context,
        } = r;
        WireRefusals {
            origin: origin.as_str().to_string(),
            reasons: reasons.iter().map(WireRefusal::from).collect(),
            context: context.clone(),
        }
    }
}

impl From<&Refusal> for WireRefusal {
    fn from(r: &Refusal) -> WireRefusal {
        let Refusal {
            rule,
            field,
            value,
            detail,
            entry,
        } = r;
        WireRefusal {
            rule: rule.code().to_string(),
            field: field.as_ref().map(Field::name),
            value: value.clone(),
            detail: detail.clone(),
            entry: entry.clone(),
        }
    }
}

impl TryFrom<WireRefusals> for Refusals {
    type Error = Malformed;

    fn try_from(w: WireRefusals) -> Result<Refusals, Malformed> {
        let WireRefusals {
            origin,
            reasons,
            context,
        } = w;
        Ok(Refusals {
            origin: Origin::parse(&origin)
                .ok_or_else(|| Malformed(format!("unknown origin `{origin}`")))?,
            reasons: reasons
                .into_iter()
                .map(Refusal::try_from)
                .collect::<Result<_, _>>()?,
            context,
        })
    }
}

impl TryFrom<WireRefusal> for Refusal {
    type Error = Malformed;

    fn try_from(w: WireRefusal) -> Result<Refusal, Malformed> {
        let WireRefusal {
            rule,
            field,
            value,
            detail,
            entry,
        } = w;
        Ok(Refusal {
            rule: Rule::from_code(&rule)
                .ok_or_else(|| Malformed(format!("unknown rule code `{rule}`")))?,
            field: field
                .map(|f| {
                    Field::from_name(&f).ok_or_else(|| Malformed(format!("unknown field `{f}`")))
                })
                .transpose()?,
            value,
            detail,
            entry,
        })
    }
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> WireError {
        match e {
            Error::Refused(r) => WireError::Refused { refusals: r.into() },
            Error::Invalid(r) => WireError::Invalid { refusals: r.into() },
            Error::Usage(m) => WireError::Usage { message: m.clone() },
            Error::Input { what, msg } => WireError::Input {
                what: what.clone(),
                message: msg.clone(),
            },
            Error::Io { path, source } => WireError::Io {
                path: path.clone(),
                message: source.to_string(),
            },
            Error::Store(m) => WireError::Store { message: m.clone() },
            other => WireError::State {
                message: other.to_string(),
            },
        }
    }
}

impl WireError {
    /// The error again, as it would have been raised locally (refusals that do
    /// not read as the rulebook's are a state error saying so).
    pub fn into_error(self) -> Error {
        let refusals = |r: WireRefusals, kind: fn(Refusals) -> Error| match Refusals::try_from(r) {
            Ok(r) => kind(r),
            Err(e) => Error::State(format!("an error answer that does not read: {e}")),
        };
        match self {
            WireError::Refused { refusals: r } => refusals(r, Error::Refused),
            WireError::Invalid { refusals: r } => refusals(r, Error::Invalid),
            WireError::Usage { message } => Error::Usage(message),
            WireError::Input { what, message } => Error::Input { what, msg: message },
            WireError::State { message } => Error::State(message),
            WireError::Io { path, message } => Error::Io {
                path,
                source: std::io::Error::other(message),
            },
            WireError::Store { message } => Error::Store(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::NameKind;

    /// Every kind of error comes back with the same text, kind, reasons and exit code.
    #[test]
    fn errors_round_trip_with_kind_text_and_exit_code() {
        let errors = [
            Error::refusals(
                Origin::Manifest,
                vec![Refusal::new(Rule::NameKindForRole, "no email on a device")
                    .on(Field::Name(NameKind::Email))
                    .value("a@b.c")],
            ),
            Error::invalid(Origin::Csr, Refusal::new(Rule::CsrUnreadable, "bad")),
            Error::invalid(
                Origin::Arguments,
                Refusal::new(Rule::ProfileValidity, "too long")
                    .on(Field::ProfileKey("validity.max".into()))
                    .in_entry("profile x.toml"),
            ),
            Error::Usage("use --x".into()),
            Error::input("CSR", "not PEM"),
            Error::State("locked".into()),
            Error::io("/x/y", std::io::Error::other("disk full")),
            Error::Store("corrupt".into()),
        ];
        for e in errors {
            let json = serde_json::to_string(&WireError::from(&e)).unwrap();
            let back: WireError = serde_json::from_str(&json).unwrap();
            let back = back.into_error();
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(back.kind(), e.kind());
            assert_eq!(back.exit_code(), e.exit_code());
            assert_eq!(back.to_json(), e.to_json());
            assert_eq!(back.reasons(), e.reasons());
        }
    }

    /// Refusals travel as users read them: codes, field names, origins.
    #[test]
    fn refusals_travel_as_codes_and_names() {
        let e = Error::refusals(
            Origin::Acme,
            vec![Refusal::new(Rule::NameOutsideProfile, "outside")
                .on(Field::Name(NameKind::Dns))
                .value("x.test")],
        );
        let json = serde_json::to_value(WireError::from(&e)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "refused",
                "refusals": {
                    "origin": "acme",
                    "reasons": [{
                        "rule": "name-outside-profile",
                        "field": "dns",
                        "value": "x.test",
                        "detail": "outside",
                        "entry": null,
                    }],
                    "context": null,
                }
            })
        );
        // A code this side does not know is said, not misread.
        let mut odd = json.clone();
        odd["refusals"]["reasons"][0]["rule"] = "from-the-future".into();
        let back: WireError = serde_json::from_value(odd).unwrap();
        let e = back.into_error();
        assert_eq!(e.kind(), "state");
        assert!(
            e.to_string()
                .contains("unknown rule code `from-the-future`"),
            "{e}"
        );
    }
}
