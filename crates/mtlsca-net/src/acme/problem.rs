//! The ACME problem types (RFC 8555 §6.7, the IANA "ACME Error Types"
//! registry): the one place that names each type and maps it to its URN
//! (`urn:ietf:params:acme:error:NAME`).

/// The URN prefix every ACME problem type carries.
pub const URN_PREFIX: &str = "urn:ietf:params:acme:error:";

macro_rules! problem_types {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// An ACME problem type (RFC 8555 §6.7).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $($(#[$doc])* $variant,)*
        }

        impl ProblemType {
            /// Every problem type, in the order of RFC 8555 §6.7.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)*];

            /// The type's name, the URN's last part (`badCSR`).
            pub fn name(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => $name,)*
                }
            }

            /// The type's URN (`urn:ietf:params:acme:error:badCSR`).
            pub fn urn(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => concat!("urn:ietf:params:acme:error:", $name),)*
                }
            }
        }
    };
}

problem_types! {
    /// The request names an account that does not exist.
    AccountDoesNotExist => "accountDoesNotExist",
    /// The certificate is already revoked.
    AlreadyRevoked => "alreadyRevoked",
    /// The CSR is unacceptable.
    BadCsr => "badCSR",
    /// The nonce is unknown, expired or used.
    BadNonce => "badNonce",
    /// The JWS's key is not acceptable.
    BadPublicKey => "badPublicKey",
    /// The revocation reason is not one the server accepts.
    BadRevocationReason => "badRevocationReason",
    /// The JWS's signature algorithm is not supported.
    BadSignatureAlgorithm => "badSignatureAlgorithm",
    /// CAA records forbid issuance.
    Caa => "caa",
    /// Several errors; see the subproblems.
    Compound => "compound",
    /// The server could not connect to the validation target.
    Connection => "connection",
    /// A DNS lookup failed during validation.
    Dns => "dns",
    /// The server requires external account binding.
    ExternalAccountRequired => "externalAccountRequired",
    /// The validation answer was wrong.
    IncorrectResponse => "incorrectResponse",
    /// A contact URL is not valid.
    InvalidContact => "invalidContact",
    /// The request is malformed.
    Malformed => "malformed",
    /// The order is not ready to be finalized.
    OrderNotReady => "orderNotReady",
    /// The request is over a rate limit.
    RateLimited => "rateLimited",
    /// The server will not issue for the identifier.
    RejectedIdentifier => "rejectedIdentifier",
    /// The server had an internal error.
    ServerInternal => "serverInternal",
    /// The TLS connection to the validation target failed.
    Tls => "tls",
    /// The client lacks the authorization.
    Unauthorized => "unauthorized",
    /// The contact URL's scheme is not supported.
    UnsupportedContact => "unsupportedContact",
    /// The identifier's type is not supported.
    UnsupportedIdentifier => "unsupportedIdentifier",
    /// The client must visit the `instance` URL (terms of service and the like).
    UserActionRequired => "userActionRequired",
}

impl ProblemType {
    /// The type of a name (`badCSR`) or URN; `None` when it is not one of RFC 8555's.
    pub fn parse(s: &str) -> Option<ProblemType> {
        let name = s.strip_prefix(URN_PREFIX).unwrap_or(s);
        ProblemType::ALL.iter().copied().find(|t| t.name() == name)
    }
}

impl std::fmt::Display for ProblemType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A problem type is written as its URN (a problem document's `type`).
impl serde::Serialize for ProblemType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.urn())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_its_urn_and_reads_back() {
        assert_eq!(ProblemType::ALL.len(), 24, "RFC 8555 §6.7 lists 24");
        for t in ProblemType::ALL {
            assert_eq!(t.urn(), format!("{URN_PREFIX}{}", t.name()));
            assert_eq!(ProblemType::parse(t.name()), Some(*t));
            assert_eq!(ProblemType::parse(t.urn()), Some(*t));
        }
        assert_eq!(
            ProblemType::BadCsr.urn(),
            "urn:ietf:params:acme:error:badCSR"
        );
        assert_eq!(
            serde_json::to_value(ProblemType::RateLimited).unwrap(),
            "urn:ietf:params:acme:error:rateLimited"
        );
        assert_eq!(ProblemType::parse("connectionLimit"), None);
    }
}
