fn main() {
    let mut buf = itoa::Buffer::new();
    let v: smallvec::SmallVec<[u8; 4]> = smallvec::smallvec![1, 2, 3];
    let s: Option<&dyn serde::de::Expected> = None;
    println!("{} {} {}", buf.format(v.len() as u64 * 14), v[0], s.is_none());
}
