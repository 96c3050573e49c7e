//! Any bytes on an input or changelog topic: decoding never panics, and what
//! decodes encodes back to a record that decodes to the same value.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sessionfold_schemas::Contract;

fn contract() -> &'static Contract {
    static C: OnceLock<Contract> = OnceLock::new();
    C.get_or_init(|| Contract::load().expect("the compiled-in schemas load"))
}

fuzz_target!(|data: &[u8]| {
    let c = contract();
    if let Ok(e) = c.decode_activity(data) {
        let again = c.encode_activity(&e).expect("a decoded event encodes");
        assert_eq!(c.decode_activity(&again).ok(), Some(e));
    }
    if let Ok(e) = c.decode_import(data) {
        let again = c.encode_import(&e).expect("a decoded event encodes");
        assert_eq!(c.decode_import(&again).ok(), Some(e));
    }
    if let Ok(s) = c.decode_presence(data) {
        let again = c.encode_presence(&s).expect("a decoded state encodes");
        assert_eq!(c.decode_presence(&again).ok(), Some(s));
    }
    if let Ok(s) = c.decode_import_state(data) {
        let again = c.encode_import_state(&s).expect("a decoded state encodes");
        assert_eq!(c.decode_import_state(&again).ok(), Some(s));
    }
});
