{
	"patcher" : {
		"fileversion" : 1,
		"appversion" : {
			"major" : 8,
			"minor" : 6,
			"revision" : 0,
			"architecture" : "x64",
			"modernui" : 1
		},
		"classnamespace" : "box",
		"rect" : [ 80.0, 80.0, 1180.0, 980.0 ],
		"bglocked" : 0,
		"openinpresentation" : 0,
		"default_fontsize" : 12.0,
		"default_fontface" : 0,
		"default_fontname" : "Arial",
		"gridonopen" : 1,
		"gridsize" : [ 15.0, 15.0 ],
		"gridsnaponopen" : 1,
		"objectsnaponopen" : 1,
		"statusbarvisible" : 2,
		"toolbarvisible" : 1,
		"lefttoolbarpinned" : 0,
		"toptoolbarpinned" : 0,
		"righttoolbarpinned" : 0,
		"bottomtoolbarpinned" : 0,
		"toolbars_unpinned_last_save" : 0,
		"tallnewobj" : 0,
		"boxanimatetime" : 200,
		"enablehscroll" : 1,
		"enablevscroll" : 1,
		"devicewidth" : 0.0,
		"description" : "cvbot: the bot's OSC to eight ES-9 outputs",
		"digest" : "",
		"tags" : "",
		"style" : "",
		"subpatcher_template" : "",
		"assistshowspatchername" : 0,
		"boxes" : [
			{
				"box" : {
					"id" : "obj-1",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 20.0, 12.0, 700.0, 26.7 ],
					"text" : "cvbot → ES-9: Twitch chat plays eight control voltages",
					"fontsize" : 16.0,
					"fontface" : 1
				}
			},
			{
				"box" : {
					"id" : "obj-2",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 20.0, 42.0, 1120.0, 47.0 ],
					"text" : "The bot sends OSC over UDP to this patch (127.0.0.1:7400 unless you set OSC_TARGETS). Each /cv sets one output: the patch smooths it, scales it for the ES-9 and plays it through dac~. Turn audio on (the speaker at the bottom) and keep the patch open for the whole show. Editing? Never type # followed by a digit into a box (see the note by expr).",
					"linecount" : 3
				}
			},
			{
				"box" : {
					"id" : "obj-3",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 20.0, 100.0, 115.0, 22.0 ],
					"text" : "udpreceive 7400"
				}
			},
			{
				"box" : {
					"id" : "obj-4",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 140.0, 100.0, 470.0, 20.0 ],
					"text" : "the bot's OSC; OSC_BUNDLE=true bundles arrive here as single messages"
				}
			},
			{
				"box" : {
					"id" : "obj-5",
					"maxclass" : "newobj",
					"numinlets" : 4,
					"numoutlets" : 4,
					"outlettype" : [ "", "", "", "" ],
					"patching_rect" : [ 20.0, 140.0, 230.0, 22.0 ],
					"text" : "route /cv /routing /cvbot/heartbeat"
				}
			},
			{
				"box" : {
					"id" : "obj-6",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 265.0, 140.0, 560.0, 20.0 ],
					"text" : "one outlet per address the bot sends; the right one gets anything else (unused)"
				}
			},
			{
				"box" : {
					"id" : "obj-7",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 35.0, 195.0, 255.0, 87.5 ],
					"text" : "/cv <output> <volts> <module> <instance> <parameter> <value>. Only the output name and the volts matter here; the volts are already inside the route's range. Emergency stop, resume and clear arrive as /cv too.",
					"linecount" : 6
				}
			},
			{
				"box" : {
					"id" : "obj-8",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "float" ],
					"patching_rect" : [ 20.0, 300.0, 70.0, 22.0 ],
					"text" : "unpack s f"
				}
			},
			{
				"box" : {
					"id" : "obj-9",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 100.0, 300.0, 180.0, 20.0 ],
					"text" : "output name, volts"
				}
			},
			{
				"box" : {
					"id" : "obj-10",
					"maxclass" : "newobj",
					"numinlets" : 3,
					"numoutlets" : 1,
					"outlettype" : [ "list" ],
					"patching_rect" : [ 20.0, 340.0, 40.0, 22.0 ],
					"text" : "atoi"
				}
			},
			{
				"box" : {
					"id" : "obj-11",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 100.0, 340.0, 200.0, 60.5 ],
					"text" : "its character codes: es9out and the hash sign are 101 115 57 111 117 116 35, the digit 49 to 56",
					"linecount" : 4
				}
			},
			{
				"box" : {
					"id" : "obj-12",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 20.0, 415.0, 62.0, 22.0 ],
					"text" : "append 0"
				}
			},
			{
				"box" : {
					"id" : "obj-13",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 100.0, 415.0, 200.0, 33.5 ],
					"text" : "a 0 after the last code, so a longer name never matches",
					"linecount" : 2
				}
			},
			{
				"box" : {
					"id" : "obj-14",
					"maxclass" : "newobj",
					"numinlets" : 9,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 100.0, 455.0, 480.0, 49.0 ],
					"text" : "expr (($i1==101)&&($i2==115)&&($i3==57)&&($i4==111)&&($i5==117)&&($i6==116)&&($i7==35)&&($i8>=49)&&($i8<=56)&&($i9==0))*($i8-48)",
					"linecount" : 3
				}
			},
			{
				"box" : {
					"id" : "obj-15",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 100.0, 515.0, 480.0, 74.0 ],
					"text" : "es9out#N gives N (1 to 8); every other name gives 0 and is dropped below. esx8cv#U.out#K and es5gate#N end there: copy this section to drive them. Why not a route with the output names? In a box, a hash sign followed by a digit is an argument placeholder that Max replaces (by 0 in a top-level patch), so no box may contain one.",
					"linecount" : 5
				}
			},
			{
				"box" : {
					"id" : "obj-16",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 20.0, 610.0, 70.0, 22.0 ],
					"text" : "pack i f"
				}
			},
			{
				"box" : {
					"id" : "obj-17",
					"maxclass" : "newobj",
					"numinlets" : 9,
					"numoutlets" : 9,
					"outlettype" : [ "", "", "", "", "", "", "", "", "" ],
					"patching_rect" : [ 20.0, 650.0, 607.0, 22.0 ],
					"text" : "route 1 2 3 4 5 6 7 8"
				}
			},
			{
				"box" : {
					"id" : "obj-18",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 640.0, 650.0, 340.0, 33.5 ],
					"text" : "1 to 8: ES-9 outputs 1 to 8; 0 (not an ES-9 output) is ignored",
					"linecount" : 2
				}
			},
			{
				"box" : {
					"id" : "obj-19",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 20.0, 685.0, 60.0, 20.0 ],
					"text" : "out 1"
				}
			},
			{
				"box" : {
					"id" : "obj-20",
					"maxclass" : "flonum",
					"format" : 6,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "bang" ],
					"parameter_enable" : 0,
					"patching_rect" : [ 20.0, 710.0, 56.0, 22.0 ]
				}
			},
			{
				"box" : {
					"id" : "obj-21",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 20.0, 745.0, 40.0, 22.0 ],
					"text" : "$1 5"
				}
			},
			{
				"box" : {
					"id" : "obj-22",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 2,
					"outlettype" : [ "signal", "bang" ],
					"patching_rect" : [ 20.0, 780.0, 42.0, 22.0 ],
					"text" : "line~"
				}
			},
			{
				"box" : {
					"id" : "obj-23",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "signal" ],
					"patching_rect" : [ 20.0, 815.0, 50.0, 22.0 ],
					"text" : "*~ 0.1"
				}
			},
			{
				"box" : {
					"id" : "obj-24",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 95.0, 685.0, 60.0, 20.0 ],
					"text" : "out 2"
				}
			},
			{
				"box" : {
					"id" : "obj-25",
					"maxclass" : "flonum",
					"format" : 6,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "bang" ],
					"parameter_enable" : 0,
					"patching_rect" : [ 95.0, 710.0, 56.0, 22.0 ]
				}
			},
			{
				"box" : {
					"id" : "obj-26",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 95.0, 745.0, 40.0, 22.0 ],
					"text" : "$1 5"
				}
			},
			{
				"box" : {
					"id" : "obj-27",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 2,
					"outlettype" : [ "signal", "bang" ],
					"patching_rect" : [ 95.0, 780.0, 42.0, 22.0 ],
					"text" : "line~"
				}
			},
			{
				"box" : {
					"id" : "obj-28",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "signal" ],
					"patching_rect" : [ 95.0, 815.0, 50.0, 22.0 ],
					"text" : "*~ 0.1"
				}
			},
			{
				"box" : {
					"id" : "obj-29",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 170.0, 685.0, 60.0, 20.0 ],
					"text" : "out 3"
				}
			},
			{
				"box" : {
					"id" : "obj-30",
					"maxclass" : "flonum",
					"format" : 6,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "bang" ],
					"parameter_enable" : 0,
					"patching_rect" : [ 170.0, 710.0, 56.0, 22.0 ]
				}
			},
			{
				"box" : {
					"id" : "obj-31",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 170.0, 745.0, 40.0, 22.0 ],
					"text" : "$1 5"
				}
			},
			{
				"box" : {
					"id" : "obj-32",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 2,
					"outlettype" : [ "signal", "bang" ],
					"patching_rect" : [ 170.0, 780.0, 42.0, 22.0 ],
					"text" : "line~"
				}
			},
			{
				"box" : {
					"id" : "obj-33",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "signal" ],
					"patching_rect" : [ 170.0, 815.0, 50.0, 22.0 ],
					"text" : "*~ 0.1"
				}
			},
			{
				"box" : {
					"id" : "obj-34",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 245.0, 685.0, 60.0, 20.0 ],
					"text" : "out 4"
				}
			},
			{
				"box" : {
					"id" : "obj-35",
					"maxclass" : "flonum",
					"format" : 6,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "bang" ],
					"parameter_enable" : 0,
					"patching_rect" : [ 245.0, 710.0, 56.0, 22.0 ]
				}
			},
			{
				"box" : {
					"id" : "obj-36",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 245.0, 745.0, 40.0, 22.0 ],
					"text" : "$1 5"
				}
			},
			{
				"box" : {
					"id" : "obj-37",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 2,
					"outlettype" : [ "signal", "bang" ],
					"patching_rect" : [ 245.0, 780.0, 42.0, 22.0 ],
					"text" : "line~"
				}
			},
			{
				"box" : {
					"id" : "obj-38",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "signal" ],
					"patching_rect" : [ 245.0, 815.0, 50.0, 22.0 ],
					"text" : "*~ 0.1"
				}
			},
			{
				"box" : {
					"id" : "obj-39",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 320.0, 685.0, 60.0, 20.0 ],
					"text" : "out 5"
				}
			},
			{
				"box" : {
					"id" : "obj-40",
					"maxclass" : "flonum",
					"format" : 6,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "bang" ],
					"parameter_enable" : 0,
					"patching_rect" : [ 320.0, 710.0, 56.0, 22.0 ]
				}
			},
			{
				"box" : {
					"id" : "obj-41",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 320.0, 745.0, 40.0, 22.0 ],
					"text" : "$1 5"
				}
			},
			{
				"box" : {
					"id" : "obj-42",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 2,
					"outlettype" : [ "signal", "bang" ],
					"patching_rect" : [ 320.0, 780.0, 42.0, 22.0 ],
					"text" : "line~"
				}
			},
			{
				"box" : {
					"id" : "obj-43",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "signal" ],
					"patching_rect" : [ 320.0, 815.0, 50.0, 22.0 ],
					"text" : "*~ 0.1"
				}
			},
			{
				"box" : {
					"id" : "obj-44",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 395.0, 685.0, 60.0, 20.0 ],
					"text" : "out 6"
				}
			},
			{
				"box" : {
					"id" : "obj-45",
					"maxclass" : "flonum",
					"format" : 6,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "bang" ],
					"parameter_enable" : 0,
					"patching_rect" : [ 395.0, 710.0, 56.0, 22.0 ]
				}
			},
			{
				"box" : {
					"id" : "obj-46",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 395.0, 745.0, 40.0, 22.0 ],
					"text" : "$1 5"
				}
			},
			{
				"box" : {
					"id" : "obj-47",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 2,
					"outlettype" : [ "signal", "bang" ],
					"patching_rect" : [ 395.0, 780.0, 42.0, 22.0 ],
					"text" : "line~"
				}
			},
			{
				"box" : {
					"id" : "obj-48",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "signal" ],
					"patching_rect" : [ 395.0, 815.0, 50.0, 22.0 ],
					"text" : "*~ 0.1"
				}
			},
			{
				"box" : {
					"id" : "obj-49",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 470.0, 685.0, 60.0, 20.0 ],
					"text" : "out 7"
				}
			},
			{
				"box" : {
					"id" : "obj-50",
					"maxclass" : "flonum",
					"format" : 6,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "bang" ],
					"parameter_enable" : 0,
					"patching_rect" : [ 470.0, 710.0, 56.0, 22.0 ]
				}
			},
			{
				"box" : {
					"id" : "obj-51",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 470.0, 745.0, 40.0, 22.0 ],
					"text" : "$1 5"
				}
			},
			{
				"box" : {
					"id" : "obj-52",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 2,
					"outlettype" : [ "signal", "bang" ],
					"patching_rect" : [ 470.0, 780.0, 42.0, 22.0 ],
					"text" : "line~"
				}
			},
			{
				"box" : {
					"id" : "obj-53",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "signal" ],
					"patching_rect" : [ 470.0, 815.0, 50.0, 22.0 ],
					"text" : "*~ 0.1"
				}
			},
			{
				"box" : {
					"id" : "obj-54",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 545.0, 685.0, 60.0, 20.0 ],
					"text" : "out 8"
				}
			},
			{
				"box" : {
					"id" : "obj-55",
					"maxclass" : "flonum",
					"format" : 6,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "bang" ],
					"parameter_enable" : 0,
					"patching_rect" : [ 545.0, 710.0, 56.0, 22.0 ]
				}
			},
			{
				"box" : {
					"id" : "obj-56",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 545.0, 745.0, 40.0, 22.0 ],
					"text" : "$1 5"
				}
			},
			{
				"box" : {
					"id" : "obj-57",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 2,
					"outlettype" : [ "signal", "bang" ],
					"patching_rect" : [ 545.0, 780.0, 42.0, 22.0 ],
					"text" : "line~"
				}
			},
			{
				"box" : {
					"id" : "obj-58",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "signal" ],
					"patching_rect" : [ 545.0, 815.0, 50.0, 22.0 ],
					"text" : "*~ 0.1"
				}
			},
			{
				"box" : {
					"id" : "obj-59",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 640.0, 710.0, 340.0, 20.0 ],
					"text" : "volts: the bot's, or the parking voltage"
				}
			},
			{
				"box" : {
					"id" : "obj-60",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 640.0, 745.0, 340.0, 74.0 ],
					"text" : "$1 5 into line~: a 5 ms ramp to each new value smooths the steps (while a slew or ramp runs the bot sends every OSC_TICK_MS, 5 ms by default). For hard steps (gates, triggers) use sig~ instead of the message box and line~.",
					"linecount" : 5
				}
			},
			{
				"box" : {
					"id" : "obj-61",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 640.0, 835.0, 340.0, 47.0 ],
					"text" : "ES-9: a sample value of 1.0 is 10 V, so volts × 0.1 (-10 to +10 V is -1 to +1). Another interface: change the factor.",
					"linecount" : 3
				}
			},
			{
				"box" : {
					"id" : "obj-62",
					"maxclass" : "newobj",
					"numinlets" : 8,
					"numoutlets" : 0,
					"patching_rect" : [ 20.0, 870.0, 532.0, 22.0 ],
					"text" : "dac~ 1 2 3 4 5 6 7 8"
				}
			},
			{
				"box" : {
					"id" : "obj-63",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 640.0, 885.0, 340.0, 33.5 ],
					"text" : "dac~ channels 1 to 8: map them to your ES-9 outputs in Options > Audio Status (I/O Mappings).",
					"linecount" : 2
				}
			},
			{
				"box" : {
					"id" : "obj-64",
					"maxclass" : "ezdac~",
					"numinlets" : 2,
					"numoutlets" : 0,
					"patching_rect" : [ 20.0, 910.0, 45.0, 45.0 ]
				}
			},
			{
				"box" : {
					"id" : "obj-65",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 75.0, 922.0, 100.0, 20.0 ],
					"text" : "audio on/off"
				}
			},
			{
				"box" : {
					"id" : "obj-66",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 310.0, 195.0, 75.0, 22.0 ],
					"text" : "prepend set"
				}
			},
			{
				"box" : {
					"id" : "obj-67",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 410.0, 195.0, 120.0, 22.0 ],
					"text" : "print cvbot-routing"
				}
			},
			{
				"box" : {
					"id" : "obj-68",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 310.0, 230.0, 340.0, 22.0 ],
					"text" : "no /routing yet"
				}
			},
			{
				"box" : {
					"id" : "obj-69",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 310.0, 265.0, 340.0, 60.5 ],
					"text" : "/routing add <output> <variable> and /routing remove <output>: the bot's routes, shown above and printed to the Max console. At start and on resume the bot sends every route again.",
					"linecount" : 4
				}
			},
			{
				"box" : {
					"id" : "obj-70",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "bang", "" ],
					"patching_rect" : [ 700.0, 195.0, 40.0, 22.0 ],
					"text" : "t b l"
				}
			},
			{
				"box" : {
					"id" : "obj-71",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "bang" ],
					"patching_rect" : [ 700.0, 230.0, 75.0, 22.0 ],
					"text" : "delay 3000"
				}
			},
			{
				"box" : {
					"id" : "obj-72",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 790.0, 230.0, 135.0, 22.0 ],
					"text" : "prepend set bot alive"
				}
			},
			{
				"box" : {
					"id" : "obj-73",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "bang", "bang" ],
					"patching_rect" : [ 700.0, 265.0, 40.0, 22.0 ],
					"text" : "t b b"
				}
			},
			{
				"box" : {
					"id" : "obj-74",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 960.0, 300.0, 95.0, 22.0 ],
					"text" : "set bot silent"
				}
			},
			{
				"box" : {
					"id" : "obj-75",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 790.0, 335.0, 300.0, 22.0 ],
					"text" : "waiting for the bot"
				}
			},
			{
				"box" : {
					"id" : "obj-76",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 790.0, 380.0, 370.0, 74.0 ],
					"text" : "/cvbot/heartbeat <instance> <seq> arrives every second (OSC_HEARTBEAT_MS). Each beat restarts the 3 s delay. When 3 s pass without one (the bot died, stopped or lost the network), every output is parked at the parking voltage and the status above says bot silent.",
					"linecount" : 5
				}
			},
			{
				"box" : {
					"id" : "obj-77",
					"maxclass" : "flonum",
					"format" : 6,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "bang" ],
					"parameter_enable" : 0,
					"patching_rect" : [ 760.0, 465.0, 60.0, 22.0 ]
				}
			},
			{
				"box" : {
					"id" : "obj-78",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 830.0, 465.0, 300.0, 47.0 ],
					"text" : "parking volts (0 when the patch opens; a change here moves nothing until the bot goes silent)",
					"linecount" : 3
				}
			},
			{
				"box" : {
					"id" : "obj-79",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "float" ],
					"patching_rect" : [ 700.0, 500.0, 32.0, 22.0 ],
					"text" : "f"
				}
			},
			{
				"box" : {
					"id" : "obj-80",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "bang", "float" ],
					"patching_rect" : [ 700.0, 535.0, 40.0, 22.0 ],
					"text" : "t b f"
				}
			},
			{
				"box" : {
					"id" : "obj-81",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 3,
					"outlettype" : [ "bang", "bang", "int" ],
					"patching_rect" : [ 640.0, 570.0, 46.0, 22.0 ],
					"text" : "uzi 8"
				}
			},
			{
				"box" : {
					"id" : "obj-82",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 760.0, 570.0, 300.0, 33.5 ],
					"text" : "channels 1 to 8, each with the parking voltage, into the same route as /cv",
					"linecount" : 2
				}
			},
			{
				"box" : {
					"id" : "obj-83",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 700.0, 615.0, 56.0, 22.0 ],
					"text" : "pack i f"
				}
			}
		],
		"lines" : [
			{
				"patchline" : {
					"source" : [ "obj-3", 0 ],
					"destination" : [ "obj-5", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-5", 0 ],
					"destination" : [ "obj-8", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-8", 0 ],
					"destination" : [ "obj-10", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-10", 0 ],
					"destination" : [ "obj-12", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-12", 0 ],
					"destination" : [ "obj-14", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-14", 0 ],
					"destination" : [ "obj-16", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-8", 1 ],
					"destination" : [ "obj-16", 1 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-16", 0 ],
					"destination" : [ "obj-17", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-17", 0 ],
					"destination" : [ "obj-20", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-20", 0 ],
					"destination" : [ "obj-21", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-21", 0 ],
					"destination" : [ "obj-22", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-22", 0 ],
					"destination" : [ "obj-23", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-17", 1 ],
					"destination" : [ "obj-25", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-25", 0 ],
					"destination" : [ "obj-26", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-26", 0 ],
					"destination" : [ "obj-27", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-27", 0 ],
					"destination" : [ "obj-28", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-17", 2 ],
					"destination" : [ "obj-30", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-30", 0 ],
					"destination" : [ "obj-31", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-31", 0 ],
					"destination" : [ "obj-32", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-32", 0 ],
					"destination" : [ "obj-33", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-17", 3 ],
					"destination" : [ "obj-35", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-35", 0 ],
					"destination" : [ "obj-36", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-36", 0 ],
					"destination" : [ "obj-37", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-37", 0 ],
					"destination" : [ "obj-38", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-17", 4 ],
					"destination" : [ "obj-40", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-40", 0 ],
					"destination" : [ "obj-41", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-41", 0 ],
					"destination" : [ "obj-42", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-42", 0 ],
					"destination" : [ "obj-43", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-17", 5 ],
					"destination" : [ "obj-45", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-45", 0 ],
					"destination" : [ "obj-46", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-46", 0 ],
					"destination" : [ "obj-47", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-47", 0 ],
					"destination" : [ "obj-48", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-17", 6 ],
					"destination" : [ "obj-50", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-50", 0 ],
					"destination" : [ "obj-51", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-51", 0 ],
					"destination" : [ "obj-52", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-52", 0 ],
					"destination" : [ "obj-53", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-17", 7 ],
					"destination" : [ "obj-55", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-55", 0 ],
					"destination" : [ "obj-56", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-56", 0 ],
					"destination" : [ "obj-57", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-57", 0 ],
					"destination" : [ "obj-58", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-23", 0 ],
					"destination" : [ "obj-62", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-28", 0 ],
					"destination" : [ "obj-62", 1 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-33", 0 ],
					"destination" : [ "obj-62", 2 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-38", 0 ],
					"destination" : [ "obj-62", 3 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-43", 0 ],
					"destination" : [ "obj-62", 4 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-48", 0 ],
					"destination" : [ "obj-62", 5 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-53", 0 ],
					"destination" : [ "obj-62", 6 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-58", 0 ],
					"destination" : [ "obj-62", 7 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-5", 1 ],
					"destination" : [ "obj-66", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-5", 1 ],
					"destination" : [ "obj-67", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-66", 0 ],
					"destination" : [ "obj-68", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-5", 2 ],
					"destination" : [ "obj-70", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-70", 0 ],
					"destination" : [ "obj-71", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-70", 1 ],
					"destination" : [ "obj-72", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-71", 0 ],
					"destination" : [ "obj-73", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-73", 1 ],
					"destination" : [ "obj-74", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-72", 0 ],
					"destination" : [ "obj-75", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-74", 0 ],
					"destination" : [ "obj-75", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-77", 0 ],
					"destination" : [ "obj-79", 1 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-73", 0 ],
					"destination" : [ "obj-79", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-79", 0 ],
					"destination" : [ "obj-80", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-80", 0 ],
					"destination" : [ "obj-81", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-81", 2 ],
					"destination" : [ "obj-83", 0 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-80", 1 ],
					"destination" : [ "obj-83", 1 ]
				}
			},
			{
				"patchline" : {
					"source" : [ "obj-83", 0 ],
					"destination" : [ "obj-17", 0 ]
				}
			}
		],
		"dependency_cache" : [  ],
		"autosave" : 0
	}
}
