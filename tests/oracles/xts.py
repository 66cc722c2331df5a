# AES-XTS (plain64) with Python's `cryptography`, an implementation
# independent of myst's. Used by the tests as an oracle:
#   python3 xts.py enc|dec KEYFILE INPUT OFFSET LEN FIRST_SECTOR OUTPUT
# Tweak = sector number counted from FIRST_SECTOR, 512-byte sectors.
import sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
mode, key, inp, off, n, first, outp = sys.argv[1:]
key = open(key, 'rb').read()
off, n, first = int(off), int(n), int(first)
with open(inp, 'rb') as f:
    f.seek(off)
    data = f.read(n)
assert len(data) == n and n % 512 == 0
res = bytearray()
for s in range(n // 512):
    c = Cipher(algorithms.AES(key), modes.XTS((first + s).to_bytes(16, 'little')))
    op = c.decryptor() if mode == 'dec' else c.encryptor()
    res += op.update(data[s * 512:(s + 1) * 512]) + op.finalize()
open(outp, 'wb').write(res)
