//! The statuses of ACME objects (RFC 8555 §7.1.6), one type per object, so an
//! order cannot be `deactivated` nor an account `ready`. They are written as
//! RFC 8555's strings, to clients (`Serialize`) and in the store's records
//! (`as_str`); `store::acme` keeps its string form, and a record is read back
//! here ([`from_stored`](OrderStatus::from_stored)): a string this server never
//! wrote reads as the status that lets nothing more happen.

macro_rules! statuses {
    (
        $(#[$doc:meta])*
        $name:ident, unknown = $fallback:ident {
            $($(#[$vdoc:meta])* $variant:ident => $text:literal,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// RFC 8555's string for it.
            pub(super) fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The status a stored record names; one it cannot hold reads as
            #[doc = concat!("`", stringify!($fallback), "`.")]
            pub(super) fn from_stored(s: &str) -> $name {
                match s {
                    $($text => $name::$variant,)*
                    _ => $name::$fallback,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

statuses! {
    /// An account's status (RFC 8555 §7.1.6: valid, deactivated by its
    /// client, revoked by the server).
    AccountStatus, unknown = Deactivated {
        /// In use.
        Valid => "valid",
        /// Deactivated by its client; for good.
        Deactivated => "deactivated",
        /// Revoked by the server (this server does not).
        Revoked => "revoked",
    }
}

statuses! {
    /// An order's status.
    OrderStatus, unknown = Invalid {
        /// Its authorizations are not all valid yet.
        Pending => "pending",
        /// Every authorization is valid: it may be finalized.
        Ready => "ready",
        /// Being finalized.
        Processing => "processing",
        /// Its certificate was issued.
        Valid => "valid",
        /// It failed (a validation failed, or it expired).
        Invalid => "invalid",
    }
}

impl OrderStatus {
    /// Whether nothing more happens to the order.
    pub(super) fn is_finished(self) -> bool {
        matches!(self, OrderStatus::Valid | OrderStatus::Invalid)
    }
}

statuses! {
    /// An authorization's status.
    AuthzStatus, unknown = Invalid {
        /// Not proved yet.
        Pending => "pending",
        /// Proved.
        Valid => "valid",
        /// Its challenge failed.
        Invalid => "invalid",
        /// Deactivated by its client (this server offers no way to).
        Deactivated => "deactivated",
        /// Expired (this server forgets expired ones instead).
        Expired => "expired",
        /// Revoked by the server (this server does not).
        Revoked => "revoked",
    }
}

statuses! {
    /// A challenge's status.
    ChallengeStatus, unknown = Invalid {
        /// Not answered yet.
        Pending => "pending",
        /// Being validated.
        Processing => "processing",
        /// Validated.
        Valid => "valid",
        /// The validation failed.
        Invalid => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_rfc_8555_strings_and_read_back() {
        for s in ["pending", "ready", "processing", "valid", "invalid"] {
            assert_eq!(OrderStatus::from_stored(s).as_str(), s);
        }
        for s in ["pending", "processing", "valid", "invalid"] {
            assert_eq!(ChallengeStatus::from_stored(s).as_str(), s);
        }
        for s in [
            "pending",
            "valid",
            "invalid",
            "deactivated",
            "expired",
            "revoked",
        ] {
            assert_eq!(AuthzStatus::from_stored(s).as_str(), s);
        }
        for s in ["valid", "deactivated", "revoked"] {
            assert_eq!(AccountStatus::from_stored(s).as_str(), s);
        }
        // What an object cannot be reads as the status that ends it.
        assert_eq!(
            OrderStatus::from_stored("deactivated"),
            OrderStatus::Invalid
        );
        assert_eq!(
            ChallengeStatus::from_stored("ready"),
            ChallengeStatus::Invalid
        );
        assert_eq!(AuthzStatus::from_stored(""), AuthzStatus::Invalid);
        assert_eq!(
            AccountStatus::from_stored("pending"),
            AccountStatus::Deactivated
        );
        assert_eq!(
            serde_json::json!({"status": OrderStatus::Ready}),
            serde_json::json!({"status": "ready"})
        );
        assert!(OrderStatus::Valid.is_finished() && OrderStatus::Invalid.is_finished());
        assert!(!OrderStatus::Processing.is_finished());
    }
}
