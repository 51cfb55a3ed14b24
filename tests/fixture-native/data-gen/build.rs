use std::{env, fs, path::Path};

fn main() {
    println!("cargo:rerun-if-changed=data/table.txt");
    let text = fs::read_to_string("data/table.txt").expect("read data/table.txt");
    let mut out = String::from("pub const TABLE: &[(&str, u32)] = &[\n");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (name, value) = line.split_once(' ').expect("`name value` per line");
        out += &format!(
            "    ({name:?}, {}),\n",
            value.trim().parse::<u32>().expect("a number")
        );
    }
    out += "];\n";
    let rows = text.lines().filter(|l| !l.trim().is_empty()).count();
    println!("cargo:rows={rows}");
    let dest = Path::new(&env::var("OUT_DIR").unwrap()).join("table.rs");
    fs::write(dest, out).unwrap();
}
