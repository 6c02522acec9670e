"""Rewrites a .cu kernel file into C++ that g++ compiles with cuda_emulation.h force-included:
`kernel<<<grid, block, smem, stream>>>(args);` becomes `emu_launch(kernel, grid, block, smem,
stream, args);` and `extern __shared__ ... name[];` a pointer to the emulated dynamic shared
memory. Usage: to_host_source.py in.cu out.cc"""
import re,sys
src=open(sys.argv[1]).read()
src=re.sub(r'extern __shared__[^;]*?(float|unsigned char) (\w+)\[\];', r'\1* \2 = (\1*)emu_dyn_smem();', src)
src=re.sub(r'([\w:<>, ]+?)\s*<<<(.*?)>>>\((.*?)\);', lambda m: f'emu_launch({m.group(1).strip()}, {m.group(2)}, {m.group(3)});', src, flags=re.S)
open(sys.argv[2],'w').write(src)
