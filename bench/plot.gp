# Draws bench/results/scaling.png from the .dat files shmval_bench writes.
#   gnuplot -e "dir='bench/results'" bench/plot.gp
if (!exists("dir")) dir = "bench/results"
set terminal pngcairo size 1500,450 font ",10" noenhanced
set output dir."/scaling.png"
set multiplot layout 1,3 title "libshmval scaling (".system("uname -m")." ".system("nproc")." cores)"
set grid
set key top left

set title "Contending processes"
set xlabel "processes"
set ylabel "ns per operation (all processes)"
set xtics 1
plot dir."/scaling_processes.dat" using 1:2 with linespoints title "locked increment", \
     "" using 1:3 with linespoints dashtype 2 title "raw robust mutex", \
     "" using 1:4 with linespoints title "atomic add", \
     "" using 1:5 with linespoints dashtype 2 title "raw __atomic add"

set title "Objects in one segment"
set xlabel "named objects"
set ylabel "ns per operation"
set logscale x
set xtics auto
plot dir."/scaling_objects.dat" using 1:2 with linespoints title "create by name", \
     "" using 1:3 with linespoints title "open by name", \
     "" using 1:4 with linespoints title "remove by name"

set title "Segment size"
set xlabel "MiB"
set ylabel "µs"
set logscale xy
plot dir."/scaling_segment_size.dat" using 1:($2/1000) with linespoints title "create+close+unlink", \
     "" using 1:($3/1000) with linespoints dashtype 2 title "raw (posix_fallocate)", \
     "" using 1:($4/1000) with linespoints title "open+close", \
     "" using 1:($5/1000) with linespoints dashtype 2 title "raw open, reading the header"
unset multiplot
