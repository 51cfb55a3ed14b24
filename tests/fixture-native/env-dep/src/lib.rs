include!(concat!(env!("OUT_DIR"), "/mode.rs"));
