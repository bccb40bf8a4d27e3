//! A minimal, deterministic ustar writer (mtime 0, root-owned, parent directories added): the
//! image layer and the OCI archive are both written with it, so equal inputs give equal bytes.

/// A minimal, deterministic ustar writer (mtime 0, root-owned; parent directories added).
#[derive(Debug, Default)]
pub struct TarBuilder {
    out: Vec<u8>,
    dirs: Vec<String>,
    pub files: Vec<String>,
}

impl TarBuilder {
    pub fn file(&mut self, path: &str, mode: u32, bytes: &[u8]) {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for dir in &parts[..parts.len() - 1] {
            prefix.push_str(dir);
            prefix.push('/');
            if !self.dirs.contains(&prefix) {
                self.dirs.push(prefix.clone());
                self.header(&prefix, 0o755, 0, b'5');
            }
        }
        self.header(path, mode, bytes.len() as u64, b'0');
        self.out.extend_from_slice(bytes);
        let pad = (512 - bytes.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self.files.push(format!("/{path}"));
    }

    fn header(&mut self, path: &str, mode: u32, size: u64, kind: u8) {
        let mut h = [0u8; 512];
        let name = path.as_bytes();
        // Names over 100 bytes go into the ustar prefix field (155 bytes) split at a '/'.
        if name.len() <= 100 {
            h[..name.len()].copy_from_slice(name);
        } else {
            let trimmed = path.trim_end_matches('/');
            let split = trimmed[..trimmed.len().min(155)].rfind('/').unwrap_or(0);
            let (pre, rest) = (&path.as_bytes()[..split], &path.as_bytes()[split + 1..]);
            h[..rest.len().min(100)].copy_from_slice(&rest[..rest.len().min(100)]);
            h[345..345 + pre.len()].copy_from_slice(pre);
        }
        octal(&mut h[100..108], mode as u64);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 0);
        h[148..156].copy_from_slice(b"        ");
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.out.extend_from_slice(&h);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    field[..width].copy_from_slice(&s.as_bytes()[s.len() - width..]);
    field[width] = 0;
}
