//! Time: clock_gettime, clock_getres, gettimeofday, time, nanosleep,
//! clock_nanosleep (the guest normally reads clocks through the host vDSO
//! without trapping at all).

use super::{copy_in, copy_out, SysResult};
use myst_fs::Errno;
use myst_platform::host;

fn ts_bytes(s: i64, ns: i64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&s.to_le_bytes());
    b[8..].copy_from_slice(&ns.to_le_bytes());
    b
}

/// clock_gettime(2).
pub fn clock_gettime(clk: u64, tp: u64) -> SysResult {
    let (s, ns) = host::clock_gettime(clk as i32)?;
    copy_out(tp, &ts_bytes(s, ns))?;
    Ok(0)
}

/// clock_getres(2).
pub fn clock_getres(clk: u64, tp: u64) -> SysResult {
    let (s, ns) = host::clock_getres(clk as i32)?;
    if tp != 0 {
        copy_out(tp, &ts_bytes(s, ns))?;
    }
    Ok(0)
}

/// gettimeofday(2).
pub fn gettimeofday(tv: u64, tz: u64) -> SysResult {
    let (s, ns) = host::clock_gettime(0)?;
    if tv != 0 {
        copy_out(tv, &ts_bytes(s, ns / 1000))?;
    }
    if tz != 0 {
        copy_out(tz, &[0u8; 8])?;
    }
    Ok(0)
}

/// time(2).
pub fn time_syscall(t: u64) -> SysResult {
    let (s, _) = host::clock_gettime(0)?;
    if t != 0 {
        copy_out(t, &s.to_le_bytes())?;
    }
    Ok(s)
}

fn read_ts(addr: u64) -> Result<(i64, i64), Errno> {
    let b = copy_in(addr, 16)?;
    let mut s = [0u8; 8];
    let mut n = [0u8; 8];
    s.copy_from_slice(&b[..8]);
    n.copy_from_slice(&b[8..]);
    let (s, n) = (i64::from_le_bytes(s), i64::from_le_bytes(n));
    if s < 0 || !(0..1_000_000_000).contains(&n) {
        return Err(Errno::EINVAL);
    }
    Ok((s, n))
}

/// nanosleep(2).
pub fn nanosleep(req: u64, rem: u64) -> SysResult {
    clock_nanosleep(1, 0, req, rem)
}

/// clock_nanosleep(2).
pub fn clock_nanosleep(clk: u64, flags: u64, req: u64, rem: u64) -> SysResult {
    let t = read_ts(req)?;
    match host::clock_nanosleep(clk as i32, flags as i32, t) {
        Ok(()) => Ok(0),
        Err((e, r)) => {
            if e == Errno::EINTR && rem != 0 && flags & 1 == 0 {
                copy_out(rem, &ts_bytes(r.0, r.1))?;
            }
            Err(e)
        }
    }
}
