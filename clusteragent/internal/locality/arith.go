package locality

import "math/bits"

// mulDiv returns a*b/c rounded down, computed in 128 bits. The quotient must fit in
// 64 bits, which holds wherever it is used here (b <= c, or small factors).
func mulDiv(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	q, _ := bits.Div64(hi, lo, c)
	return q
}

// mulDivRound returns a*b/c rounded to the nearest integer (halves up).
func mulDivRound(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	lo, carry := bits.Add64(lo, c/2, 0)
	q, _ := bits.Div64(hi+carry, lo, c)
	return q
}
