//! Profile and manifest parsing: any text through `Profile::parse` (a profile that
//! parses must print, with `to_toml`, as text that parses back to the same
//! profile) and through `batch::Manifest::parse` with the id rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtlsca::profile::Profile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Profile::parse(text, "fuzz") {
        let printed = p.to_toml();
        let back = Profile::parse(&printed, "fuzz (printed)").unwrap_or_else(|e| {
            panic!("a parsed profile prints as text that does not parse: {e}\n{printed}")
        });
        assert_eq!(
            serde_json::to_string(&p).ok(),
            serde_json::to_string(&back).ok(),
            "printing and parsing again changed the profile"
        );
    }
    if let Ok(m) = mtlsca::batch::Manifest::parse(text, "fuzz") {
        for e in &m.certificate {
            if mtlsca::batch::check_id(&e.id).is_ok() {
                // An accepted id is a plain file name inside --out-dir.
                assert!(!e.id.contains(['/', '\\', '\0']) && e.id != "." && e.id != "..");
                assert!(!e.id.starts_with('.'), "hidden id {:?}", e.id);
            }
        }
    }
});
