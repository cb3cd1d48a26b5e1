# SPDX-License-Identifier: MIT
# The latency distributions of a bench/run.sh run, as CDFs on a log axis:
# W1's round trip and W7's post-to-callback latency at three mean gaps.
#   gnuplot -e "term='pngcairo'; out='x.png'; dist='DIR'; impls='a b'" plot.gp
# DIR holds W1-IMPL.dat and W7-GAP-IMPL.dat: "ns fraction" per line.
set terminal @term
set output out
set multiplot layout 2,2 title "libiothread benchmarks: latency CDFs (last repetition)"
set logscale x 10
set format x "10^{%L}"
set xlabel "ns"
set ylabel "fraction <= x"
set yrange [0:1]
set grid xtics ytics mxtics
set key bottom right font ",8"
# One colour per implementation (the order of run.sh's IMPLS); floors dashed.
colours = "#9400d3 #009e73 #56b4e9 #e69f00 #c8b400 #0072b2 #e51e10 #000000 #a0522d #808080"

have_file(f) = system("test -s '".f."' && echo 1 || echo 0") + 0

# The position of word w in the list l.
index(l, w) = sum [k = 1:words(l)] (word(l, k) eq w ? k : 0)

do for [panel in "W1 W7-5us W7-500us W7-5ms"] {
    if (panel eq "W1") {
        set title "W1: cross-thread round trip"
    } else {
        set title sprintf("%s: post to callback, Poisson posts", panel)
    }
    files = ""
    names = ""
    do for [i in impls] {
        f = dist."/".panel."-".i.".dat"
        if (have_file(f)) {
            files = files." ".f
            names = names." ".i
        }
    }
    if (words(files) > 0) {
        plot for [k = 1:words(files)] word(files, k) using 1:2 with lines \
             lw 2 dt 1 + (word(names, k)[1:5] eq "floor") \
             lc rgb word(colours, index(impls, word(names, k))) title word(names, k)
    } else {
        set label 1 "no data" at graph 0.5, 0.5 center
        plot NaN notitle
        unset label 1
    }
}
unset multiplot
