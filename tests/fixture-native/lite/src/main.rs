fn main() {
    println!(
        "add={} table={} mode={} seed={} warns={} fails={} zlib-pc={} zlib={} mul={}",
        cc_header::add(2, 3),
        data_gen::table(),
        env_dep::MODE,
        no_decl::SEED,
        warns::ran(),
        fails::ok(),
        pkgconf::PKG_CONFIG_ZLIB,
        pkgconf::zlib_version(),
        cmake_lib::mul(3, 4),
    );
}
