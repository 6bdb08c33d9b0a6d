//go:build !purego

#include "textflag.h"

// WINDOW is stopWindow: the most 64-byte blocks one call classifies.
#define WINDOW 16

// STOPS64 leaves in AX the bit mask of the 64 bytes at (R) that equal
// X0's bytes (LF) or X1's (NUL). It clobbers DX and X2-X6.
#define STOPS64(R) \
	MOVOU   (R), X2 \
	MOVOU   16(R), X3 \
	MOVOU   32(R), X4 \
	MOVOU   48(R), X5 \
	MOVOA   X2, X6 \
	PCMPEQB X0, X2 \
	PCMPEQB X1, X6 \
	POR     X6, X2 \
	PMOVMSKB X2, AX \
	MOVOA   X3, X6 \
	PCMPEQB X0, X3 \
	PCMPEQB X1, X6 \
	POR     X6, X3 \
	PMOVMSKB X3, DX \
	SHLQ    $16, DX \
	ORQ     DX, AX \
	MOVOA   X4, X6 \
	PCMPEQB X0, X4 \
	PCMPEQB X1, X6 \
	POR     X6, X4 \
	PMOVMSKB X4, DX \
	SHLQ    $32, DX \
	ORQ     DX, AX \
	MOVOA   X5, X6 \
	PCMPEQB X0, X5 \
	PCMPEQB X1, X6 \
	POR     X6, X5 \
	PMOVMSKB X5, DX \
	SHLQ    $48, DX \
	ORQ     DX, AX

// STOPS64AVX2 is STOPS64 with AVX2: Y0 holds LF in every byte, Y1 zero.
// It clobbers DX and Y2-Y5.
#define STOPS64AVX2(R) \
	VMOVDQU   (R), Y2 \
	VMOVDQU   32(R), Y3 \
	VPCMPEQB  Y0, Y2, Y4 \
	VPCMPEQB  Y1, Y2, Y2 \
	VPOR      Y4, Y2, Y2 \
	VPMOVMSKB Y2, AX \
	VPCMPEQB  Y0, Y3, Y5 \
	VPCMPEQB  Y1, Y3, Y3 \
	VPOR      Y5, Y3, Y3 \
	VPMOVMSKB Y3, DX \
	SHLQ      $32, DX \
	ORQ       DX, AX

// func stopMaskAsm(b []byte, from int, dst *[WINDOW]uint64, avx2 bool) int
//
// Classifies up to WINDOW whole blocks from b[from:] with STOPS64, or with
// STOPS64AVX2 when avx2 is set, and then a partial last block, which it
// reads as the buffer's last 64 bytes and shifts. Requires len(b) >= 64
// and 0 <= from < len(b).
TEXT ·stopMaskAsm(SB), NOSPLIT, $0-56
	MOVQ    b_base+0(FP), SI
	MOVQ    b_len+8(FP), BX
	MOVQ    from+24(FP), R9
	MOVQ    dst+32(FP), DI
	MOVBQZX avx2+40(FP), R11     // R11: use AVX2
	LEAQ    -64(SI)(BX*1), R8    // R8: the buffer's last 64 bytes
	ADDQ    R9, SI               // SI: the first byte to classify
	SUBQ    R9, BX               // BX: bytes left from there
	MOVQ    $0x0a0a0a0a0a0a0a0a, AX
	MOVQ    AX, X0
	PUNPCKLQDQ X0, X0            // X0: LF in every byte
	PXOR    X1, X1               // X1: NUL in every byte
	TESTQ   R11, R11
	JZ      count
	VPBROADCASTB X0, Y0          // the same in 32 bytes
	VPXOR   Y1, Y1, Y1
count:
	MOVQ    BX, CX
	SHRQ    $6, CX               // CX: whole blocks left
	XORQ    R12, R12             // R12: 1 if a partial block follows them
	CMPQ    CX, $WINDOW
	JB      short
	MOVQ    $WINDOW, CX
	JMP     start
short:
	TESTQ   $63, BX
	SETNE   R12B
start:
	MOVQ    CX, R10              // R10: words written
	TESTQ   CX, CX
	JZ      tail
blocks:
	TESTQ   R11, R11
	JNZ     blockavx
	STOPS64(SI)
	JMP     store
blockavx:
	STOPS64AVX2(SI)
store:
	MOVQ    AX, (DI)
	ADDQ    $64, SI
	ADDQ    $8, DI
	DECQ    CX
	JNZ     blocks
tail:
	TESTQ   R12, R12
	JZ      done
	TESTQ   R11, R11
	JNZ     tailavx
	STOPS64(R8)
	JMP     shift
tailavx:
	STOPS64AVX2(R8)
shift:
	// The last BX&63 bytes are wanted: shift out the 64-(BX&63) before.
	MOVQ    BX, CX
	ANDQ    $63, CX
	NEGQ    CX
	ADDQ    $64, CX
	SHRQ    CX, AX
	MOVQ    AX, (DI)
	INCQ    R10
done:
	TESTQ   R11, R11
	JZ      out
	VZEROUPPER
out:
	MOVQ    R10, ret+48(FP)
	RET
