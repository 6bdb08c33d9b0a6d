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

// func stopMaskSSE2(b []byte, from int, dst *[WINDOW]uint64) int
//
// Requires len(b) >= 64 and 0 <= from < len(b).
TEXT ·stopMaskSSE2(SB), NOSPLIT, $0-48
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), BX
	MOVQ from+24(FP), R9
	MOVQ dst+32(FP), DI
	LEAQ -64(SI)(BX*1), R8       // R8: the buffer's last 64 bytes
	ADDQ R9, SI                  // SI: the first byte to classify
	SUBQ R9, BX                  // BX: bytes left from there
	MOVQ $0x0a0a0a0a0a0a0a0a, AX
	MOVQ AX, X0
	PUNPCKLQDQ X0, X0            // X0: LF in every byte
	PXOR X1, X1                  // X1: NUL in every byte
	MOVQ BX, CX
	SHRQ $6, CX                  // CX: whole blocks left
	CMPQ CX, $WINDOW
	JB   partial
	MOVQ $WINDOW, CX
	MOVQ CX, ret+40(FP)
whole:
	STOPS64(SI)
	MOVQ AX, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	DECQ CX
	JNZ  whole
	RET

partial:
	MOVQ CX, R10                 // R10: words written
	TESTQ CX, CX
	JZ   tail
blocks:
	STOPS64(SI)
	MOVQ AX, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	DECQ CX
	JNZ  blocks
tail:
	// The BX&63 bytes left are the last bytes of the buffer: classify
	// its last 64 bytes and shift out the ones already done.
	MOVQ BX, CX
	ANDQ $63, CX
	JZ   done
	STOPS64(R8)
	NEGQ CX
	ADDQ $64, CX
	SHRQ CX, AX
	MOVQ AX, (DI)
	INCQ R10
done:
	MOVQ R10, ret+40(FP)
	RET

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

// func stopMaskAVX2(b []byte, from int, dst *[WINDOW]uint64) int
//
// stopMaskSSE2 with 32-byte vectors. Requires AVX2, len(b) >= 64 and
// 0 <= from < len(b).
TEXT ·stopMaskAVX2(SB), NOSPLIT, $0-48
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), BX
	MOVQ from+24(FP), R9
	MOVQ dst+32(FP), DI
	LEAQ -64(SI)(BX*1), R8       // R8: the buffer's last 64 bytes
	ADDQ R9, SI                  // SI: the first byte to classify
	SUBQ R9, BX                  // BX: bytes left from there
	MOVQ $0x0a, AX
	MOVQ AX, X0
	VPBROADCASTB X0, Y0          // Y0: LF in every byte
	VPXOR Y1, Y1, Y1             // Y1: NUL in every byte
	MOVQ BX, CX
	SHRQ $6, CX                  // CX: whole blocks left
	CMPQ CX, $WINDOW
	JB   avxpartial
	MOVQ $WINDOW, CX
	MOVQ CX, ret+40(FP)
avxwhole:
	STOPS64AVX2(SI)
	MOVQ AX, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	DECQ CX
	JNZ  avxwhole
	VZEROUPPER
	RET

avxpartial:
	MOVQ CX, R10                 // R10: words written
	TESTQ CX, CX
	JZ   avxtail
avxblocks:
	STOPS64AVX2(SI)
	MOVQ AX, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	DECQ CX
	JNZ  avxblocks
avxtail:
	MOVQ BX, CX
	ANDQ $63, CX
	JZ   avxdone
	STOPS64AVX2(R8)
	NEGQ CX
	ADDQ $64, CX
	SHRQ CX, AX
	MOVQ AX, (DI)
	INCQ R10
avxdone:
	VZEROUPPER
	MOVQ R10, ret+40(FP)
	RET
