import { closeSync, constants, openSync } from 'node:fs';
import koffi from 'koffi';

/**
 * Marks a directory as the top of directory hierarchies for ext4's Orlov allocator (`chattr +T`,
 * FS_TOPDIR_FL): each directory made in it then starts in a block group of its own choosing among those with
 * free space, instead of next to its parent.
 *
 * Why a snapshotter wants it: on ext4 without a journal (common on VM disks), allocating an inode scans every
 * inode of the block group freed in the last minute (`recently_deleted`, fs/ext4/ialloc.c), one buffer
 * lookup each. Unpacking 20,000 files next to the 20,000 an `images rm` just removed pays that scan per file:
 * 20 s instead of 1.5 s here (bench/README.md). With the flag, a new snapshot's tree lands in another group.
 * On a journaled ext4 the allocator only spreads trees; other file systems have no such flag.
 *
 * Returns whether the flag is set; false where the file system does not support it (never throws for that).
 */
export function spreadSubdirectories(dir: string): boolean {
  return withDirectory(dir, (fd) => {
    const flags = [0];
    if (getFlags(fd, FS_IOC_GETFLAGS, flags) < 0) return false;
    const current = flags[0] ?? 0;
    if (current & FS_TOPDIR_FL) return true;
    return setFlags(fd, FS_IOC_SETFLAGS, [current | FS_TOPDIR_FL]) === 0;
  });
}

/** Whether `dir` carries the flag `spreadSubdirectories` sets. */
export function spreadsSubdirectories(dir: string): boolean {
  return withDirectory(dir, (fd) => {
    const flags = [0];
    return getFlags(fd, FS_IOC_GETFLAGS, flags) === 0 && ((flags[0] ?? 0) & FS_TOPDIR_FL) !== 0;
  });
}

/** linux/fs.h: _IOR('f', 1, long), _IOW('f', 2, long) (the kernel reads and writes an int). */
const FS_IOC_GETFLAGS = 0x80086601;
const FS_IOC_SETFLAGS = 0x40086602;
const FS_TOPDIR_FL = 0x00020000;

const libc = koffi.load('libc.so.6');
// ioctl(2) is variadic; its third argument here is always an int pointer, declared as such for each direction.
const getFlags: (fd: number, request: number, out: number[]) => number = libc.func(
  'int ioctl(int fd, unsigned long request, _Out_ int *flags)',
);
const setFlags: (fd: number, request: number, flags: number[]) => number = libc.func(
  'int ioctl(int fd, unsigned long request, const int *flags)',
);

function withDirectory(dir: string, fn: (fd: number) => boolean): boolean {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}
