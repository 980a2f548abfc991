//! Profile parsing: any text through `Profile::parse`; a profile that parses must
//! print (`to_toml`) as text that parses back to the same profile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtlsca::profile::Profile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = Profile::parse(text, "fuzz") else {
        return;
    };
    let printed = p.to_toml();
    let back = Profile::parse(&printed, "fuzz (printed)")
        .unwrap_or_else(|e| panic!("a parsed profile prints as text that does not parse: {e}\n{printed}"));
    assert_eq!(
        serde_json::to_string(&p).ok(),
        serde_json::to_string(&back).ok(),
        "printing and parsing again changed the profile"
    );
});
