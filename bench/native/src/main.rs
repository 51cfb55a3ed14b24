use std::ffi::CStr;
use std::os::raw::c_int;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let data = b"jetcc native benchmark ".repeat(64);

    let digest = ring::digest::digest(&ring::digest::SHA256, &data);
    let sha: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let packed = zstd::encode_all(&data[..], 3).expect("zstd compress");
    let unpacked = zstd::decode_all(&packed[..]).expect("zstd decompress");
    assert_eq!(unpacked, data);

    let zlib = unsafe { CStr::from_ptr(libz_sys::zlibVersion()) }
        .to_string_lossy()
        .into_owned();
    let crc = unsafe { libz_sys::crc32(0, data.as_ptr(), data.len() as _) };

    let (mut major, mut minor, mut rev): (c_int, c_int, c_int) = (0, 0, 0);
    unsafe {
        libgit2_sys::git_libgit2_init();
        libgit2_sys::git_libgit2_version(&mut major, &mut minor, &mut rev);
        libgit2_sys::git_libgit2_shutdown();
    }

    let v = vec![0u8; 100];
    let usable = unsafe { tikv_jemallocator::usable_size(v.as_ptr()) };

    println!(
        "sha256={sha} zstd={}->{} zlib={zlib} crc32={crc:08x} libgit2={major}.{minor}.{rev} jemalloc_usable(100)={usable}",
        data.len(),
        packed.len(),
    );
}
