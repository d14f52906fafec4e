/** Linux errno numbers (asm-generic) that opens return, by name; others are shown as numbers. */
const NAMES: Readonly<Record<number, string>> = {
  1: 'EPERM',
  2: 'ENOENT',
  4: 'EINTR',
  5: 'EIO',
  6: 'ENXIO',
  11: 'EAGAIN',
  12: 'ENOMEM',
  13: 'EACCES',
  14: 'EFAULT',
  16: 'EBUSY',
  17: 'EEXIST',
  19: 'ENODEV',
  20: 'ENOTDIR',
  21: 'EISDIR',
  22: 'EINVAL',
  23: 'ENFILE',
  24: 'EMFILE',
  26: 'ETXTBSY',
  27: 'EFBIG',
  28: 'ENOSPC',
  30: 'EROFS',
  36: 'ENAMETOOLONG',
  40: 'ELOOP',
  75: 'EOVERFLOW',
  95: 'EOPNOTSUPP',
  116: 'ESTALE',
  122: 'EDQUOT',
};

export function errnoName(n: number): string {
  return NAMES[n] ?? String(n);
}
