include!(concat!(env!("OUT_DIR"), "/seed.rs"));
