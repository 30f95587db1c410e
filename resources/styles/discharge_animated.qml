<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis styleCategories="Symbology|Fields|MapTips|Rendering" version="3.22.16-Białowieża" simplifyDrawingHints="1" symbologyReferenceScale="-1" hasScaleBasedVisibilityFlag="0" simplifyDrawingTol="1" maxScale="0" minScale="100000000" simplifyAlgorithm="0" simplifyMaxScale="1" simplifyLocal="1">
  <renderer-v2 attr="array_get(thalweg_frame(@layer_id, @map_start_time), $id)" forceraster="0" referencescale="-1" enableorderby="1" symbollevels="0" graduatedMethod="GraduatedColor" type="graduatedSymbol">
    <ranges>
      <range render="true" upper="1.000000000000000" label="0 - 1 m³/s" symbol="0" lower="0.000000000000000"/>
      <range render="true" upper="10.000000000000000" label="1 - 10 m³/s" symbol="1" lower="1.000000000000000"/>
    </ranges>
    <symbols>
      <symbol alpha="1" clip_to_extent="1" force_rhr="0" name="0" type="line">
        <data_defined_properties>
          <Option type="Map">
            <Option value="" name="name" type="QString"/>
            <Option name="properties"/>
            <Option value="collection" name="type" type="QString"/>
          </Option>
        </data_defined_properties>
        <layer pass="0" class="SimpleLine" enabled="1" locked="0">
          <Option type="Map">
            <Option value="0" name="align_dash_pattern" type="QString"/>
            <Option value="round" name="capstyle" type="QString"/>
            <Option value="5;2" name="customdash" type="QString"/>
            <Option value="3x:0,0,0,0,0,0" name="customdash_map_unit_scale" type="QString"/>
            <Option value="MM" name="customdash_unit" type="QString"/>
            <Option value="0" name="dash_pattern_offset" type="QString"/>
            <Option value="3x:0,0,0,0,0,0" name="dash_pattern_offset_map_unit_scale" type="QString"/>
            <Option value="MM" name="dash_pattern_offset_unit" type="QString"/>
            <Option value="0" name="draw_inside_polygon" type="QString"/>
            <Option value="round" name="joinstyle" type="QString"/>
            <Option value="199,233,180,255" name="line_color" type="QString"/>
            <Option value="solid" name="line_style" type="QString"/>
            <Option value="0.3" name="line_width" type="QString"/>
            <Option value="MM" name="line_width_unit" type="QString"/>
            <Option value="0" name="offset" type="QString"/>
            <Option value="3x:0,0,0,0,0,0" name="offset_map_unit_scale" type="QString"/>
            <Option value="MM" name="offset_unit" type="QString"/>
            <Option value="0" name="ring_filter" type="QString"/>
            <Option value="0" name="trim_distance_end" type="QString"/>
            <Option value="3x:0,0,0,0,0,0" name="trim_distance_end_map_unit_scale" type="QString"/>
            <Option value="MM" name="trim_distance_end_unit" type="QString"/>
            <Option value="0" name="trim_distance_start" type="QString"/>
            <Option value="3x:0,0,0,0,0,0" name="trim_distance_start_map_unit_scale" type="QString"/>
            <Option value="MM" name="trim_distance_start_unit" type="QString"/>
            <Option value="0" name="tweak_dash_pattern_on_corners" type="QString"/>
            <Option value="0" name="use_custom_dash" type="QString"/>
            <Option value="3x:0,0,0,0,0,0" name="width_map_unit_scale" type="QString"/>
          </Option>
          <prop v="0" k="align_dash_pattern"/>
          <prop v="round" k="capstyle"/>
          <prop v="5;2" k="customdash"/>
          <prop v="3x:0,0,0,0,0,0" k="customdash_map_unit_scale"/>
          <prop v="MM" k="customdash_unit"/>
          <prop v="0" k="dash_pattern_offset"/>
          <prop v="3x:0,0,0,0,0,0" k="dash_pattern_offset_map_unit_scale"/>
          <prop v="MM" k="dash_pattern_offset_unit"/>
          <prop v="0" k="draw_inside_polygon"/>
          <prop v="round" k="joinstyle"/>
          <prop v="199,233,180,255" k="line_color"/>
          <prop v="solid" k="line_style"/>
          <prop v="0.3" k="line_width"/>
          <prop v="MM" k="line_width_unit"/>
          <prop v="0" k="offset"/>
          <prop v="3x:0,0,0,0,0,0" k="offset_map_unit_scale"/>
          <prop v="MM" k="offset_unit"/>
          <prop v="0" k="ring_filter"/>
          <prop v="0" k="trim_distance_end"/>
          <prop v="3x:0,0,0,0,0,0" k="trim_distance_end_map_unit_scale"/>
          <prop v="MM" k="trim_distance_end_unit"/>
          <prop v="0" k="trim_distance_start"/>
          <prop v="3x:0,0,0,0,0,0" k="trim_distance_start_map_unit_scale"/>
          <prop v="MM" k="trim_distance_start_unit"/>
          <prop v="0" k="tweak_dash_pattern_on_corners"/>
          <prop v="0" k="use_custom_dash"/>
          <prop v="3x:0,0,0,0,0,0" k="width_map_unit_scale"/>
          <data_defined_properties>
            <Option type="Map">
              <Option value="" name="name" type="QString"/>
              <Option name="properties"/>
              <Option value="collection" name="type" type="QString"/>
            </Option>
          </data_defined_properties>
        </layer>
      </symbol>
      <symbol alpha="1" clip_to_extent="1" force_rhr="0" name="1" type="line">
        <data_defined_properties>
          <Option type="Map">
            <Option value="" name="name" type="QString"/>
            <Option name="properties"/>
            <Option value="collection" name="type" type="QString"/>
          </Option>
        </data_defined_properties>
        <layer pass="0" class="SimpleLine" enabled="1" locked="0">
          <Option type="Map">
            <Option value="0" name="align_dash_pattern" type="QString"/>
            <Option value="round" name="capstyle" type="QString"/>
            <Option value="5;2" name="customdash" type="QString"/>
            <Option value="3x:0,0,0,0,0,0" name="customdash_map_unit_scale" type="QString"/>
            <Option value="MM" name="customdash_unit" type="QString"/>
            <Option value="0" name="dash_pattern_offset" type="QString"/>
            <Option value="3x:0,0,0,0,0,0" name="dash_pattern_offset_map_unit_scale" type="QString"/>
            <Option value="MM" name="dash_pattern_offset_unit" type="QString"/>
            <Option value="0" name="draw_inside_polygon" type="QString"/>
            <Option value="round" name="joinstyle" type="QString"/>
            <Option value="8,29,88,255" name="line_color" type="QString"/>
            <Option value="solid" name="line_style" type="QString"/>
            <Option value="1.8" name="line_width" type="QString"/>
            <Option value="MM" name="line_width_unit" type="QString"/>
            <Option value="0" name="offset" type="QString"/>
            <Option value="3x:0,0,0,0,0,0" name="offset_map_unit_scale" type="QString"/>
            <Option value="MM" name="offset_unit" type="QString"/>
            <Option value="0" name="ring_filter" type="QString"/>
            <Option value="0" name="trim_distance_end" type="QString"/>
            <Option value="3x:0,0,0,0,0,0" name="trim_distance_end_map_unit_scale" type="QString"/>
            <Option value="MM" name="trim_distance_end_unit" type="QString"/>
            <Option value="0" name="trim_distance_start" type="QString"/>
            <Option value="3x:0,0,0,0,0,0" name="trim_distance_start_map_unit_scale" type="QString"/>
            <Option value="MM" name="trim_distance_start_unit" type="QString"/>
            <Option value="0" name="tweak_dash_pattern_on_corners" type="QString"/>
            <Option value="0" name="use_custom_dash" type="QString"/>
            <Option value="3x:0,0,0,0,0,0" name="width_map_unit_scale" type="QString"/>
          </Option>
          <prop v="0" k="align_dash_pattern"/>
          <prop v="round" k="capstyle"/>
          <prop v="5;2" k="customdash"/>
          <prop v="3x:0,0,0,0,0,0" k="customdash_map_unit_scale"/>
          <prop v="MM" k="customdash_unit"/>
          <prop v="0" k="dash_pattern_offset"/>
          <prop v="3x:0,0,0,0,0,0" k="dash_pattern_offset_map_unit_scale"/>
          <prop v="MM" k="dash_pattern_offset_unit"/>
          <prop v="0" k="draw_inside_polygon"/>
          <prop v="round" k="joinstyle"/>
          <prop v="8,29,88,255" k="line_color"/>
          <prop v="solid" k="line_style"/>
          <prop v="1.8" k="line_width"/>
          <prop v="MM" k="line_width_unit"/>
          <prop v="0" k="offset"/>
          <prop v="3x:0,0,0,0,0,0" k="offset_map_unit_scale"/>
          <prop v="MM" k="offset_unit"/>
          <prop v="0" k="ring_filter"/>
          <prop v="0" k="trim_distance_end"/>
          <prop v="3x:0,0,0,0,0,0" k="trim_distance_end_map_unit_scale"/>
          <prop v="MM" k="trim_distance_end_unit"/>
          <prop v="0" k="trim_distance_start"/>
          <prop v="3x:0,0,0,0,0,0" k="trim_distance_start_map_unit_scale"/>
          <prop v="MM" k="trim_distance_start_unit"/>
          <prop v="0" k="tweak_dash_pattern_on_corners"/>
          <prop v="0" k="use_custom_dash"/>
          <prop v="3x:0,0,0,0,0,0" k="width_map_unit_scale"/>
          <data_defined_properties>
            <Option type="Map">
              <Option value="" name="name" type="QString"/>
              <Option name="properties"/>
              <Option value="collection" name="type" type="QString"/>
            </Option>
          </data_defined_properties>
        </layer>
      </symbol>
    </symbols>
    <colorramp name="[source]" type="gradient">
      <Option type="Map">
        <Option value="199,233,180,255" name="color1" type="QString"/>
        <Option value="8,29,88,255" name="color2" type="QString"/>
        <Option value="0" name="discrete" type="QString"/>
        <Option value="gradient" name="rampType" type="QString"/>
        <Option value="0.166667;127,205,187,255:0.333333;65,182,196,255:0.5;29,145,192,255:0.666667;34,94,168,255:0.833333;37,52,148,255" name="stops" type="QString"/>
      </Option>
      <prop v="199,233,180,255" k="color1"/>
      <prop v="8,29,88,255" k="color2"/>
      <prop v="0" k="discrete"/>
      <prop v="gradient" k="rampType"/>
      <prop v="0.166667;127,205,187,255:0.333333;65,182,196,255:0.5;29,145,192,255:0.666667;34,94,168,255:0.833333;37,52,148,255" k="stops"/>
    </colorramp>
    <classificationMethod id="Custom">
      <symmetricMode astride="0" symmetrypoint="0" enabled="0"/>
      <labelFormat trimtrailingzeroes="1" format="%1 - %2" labelprecision="4"/>
      <parameters>
        <Option/>
      </parameters>
      <extraInformation/>
    </classificationMethod>
    <rotation/>
    <sizescale/>
    <orderby>
      <orderByClause asc="1" nullsFirst="0">"area_km2"</orderByClause>
    </orderby>
  </renderer-v2>
  <blendMode>0</blendMode>
  <featureBlendMode>0</featureBlendMode>
  <layerOpacity>1</layerOpacity>
  <fieldConfiguration>
    <field configurationFlags="None" name="fid"/>
    <field configurationFlags="None" name="reach_id"/>
    <field configurationFlags="None" name="downstream_id"/>
    <field configurationFlags="None" name="length_m"/>
    <field configurationFlags="None" name="area_km2"/>
    <field configurationFlags="None" name="mean"/>
    <field configurationFlags="None" name="max"/>
    <field configurationFlags="None" name="time_of_max"/>
    <field configurationFlags="None" name="q05"/>
    <field configurationFlags="None" name="q50"/>
    <field configurationFlags="None" name="q95"/>
  </fieldConfiguration>
  <aliases>
    <alias field="fid" index="0" name=""/>
    <alias field="reach_id" index="1" name="Reach id"/>
    <alias field="downstream_id" index="2" name="Downstream reach id"/>
    <alias field="length_m" index="3" name="Length [m]"/>
    <alias field="area_km2" index="4" name="Drainage area [km²]"/>
    <alias field="mean" index="5" name="Mean discharge [m³/s]"/>
    <alias field="max" index="6" name="Peak discharge [m³/s]"/>
    <alias field="time_of_max" index="7" name="Time of peak (UTC)"/>
    <alias field="q05" index="8" name="Q5: exceeded 5 % of the time [m³/s]"/>
    <alias field="q50" index="9" name="Q50: median discharge [m³/s]"/>
    <alias field="q95" index="10" name="Q95: exceeded 95 % of the time [m³/s]"/>
  </aliases>
  <defaults>
    <default field="fid" expression="" applyOnUpdate="0"/>
    <default field="reach_id" expression="" applyOnUpdate="0"/>
    <default field="downstream_id" expression="" applyOnUpdate="0"/>
    <default field="length_m" expression="" applyOnUpdate="0"/>
    <default field="area_km2" expression="" applyOnUpdate="0"/>
    <default field="mean" expression="" applyOnUpdate="0"/>
    <default field="max" expression="" applyOnUpdate="0"/>
    <default field="time_of_max" expression="" applyOnUpdate="0"/>
    <default field="q05" expression="" applyOnUpdate="0"/>
    <default field="q50" expression="" applyOnUpdate="0"/>
    <default field="q95" expression="" applyOnUpdate="0"/>
  </defaults>
  <constraints>
    <constraint field="fid" unique_strength="1" exp_strength="0" notnull_strength="1" constraints="3"/>
    <constraint field="reach_id" unique_strength="0" exp_strength="0" notnull_strength="0" constraints="0"/>
    <constraint field="downstream_id" unique_strength="0" exp_strength="0" notnull_strength="0" constraints="0"/>
    <constraint field="length_m" unique_strength="0" exp_strength="0" notnull_strength="0" constraints="0"/>
    <constraint field="area_km2" unique_strength="0" exp_strength="0" notnull_strength="0" constraints="0"/>
    <constraint field="mean" unique_strength="0" exp_strength="0" notnull_strength="0" constraints="0"/>
    <constraint field="max" unique_strength="0" exp_strength="0" notnull_strength="0" constraints="0"/>
    <constraint field="time_of_max" unique_strength="0" exp_strength="0" notnull_strength="0" constraints="0"/>
    <constraint field="q05" unique_strength="0" exp_strength="0" notnull_strength="0" constraints="0"/>
    <constraint field="q50" unique_strength="0" exp_strength="0" notnull_strength="0" constraints="0"/>
    <constraint field="q95" unique_strength="0" exp_strength="0" notnull_strength="0" constraints="0"/>
  </constraints>
  <constraintExpressions>
    <constraint field="fid" exp="" desc=""/>
    <constraint field="reach_id" exp="" desc=""/>
    <constraint field="downstream_id" exp="" desc=""/>
    <constraint field="length_m" exp="" desc=""/>
    <constraint field="area_km2" exp="" desc=""/>
    <constraint field="mean" exp="" desc=""/>
    <constraint field="max" exp="" desc=""/>
    <constraint field="time_of_max" exp="" desc=""/>
    <constraint field="q05" exp="" desc=""/>
    <constraint field="q50" exp="" desc=""/>
    <constraint field="q95" exp="" desc=""/>
  </constraintExpressions>
  <expressionfields/>
  <mapTip>&lt;b>Reach [% "reach_id" %]&lt;/b>&lt;br>mean [% format_number("mean", 2) %] m³/s, max [% format_number("max", 2) %] m³/s at [% format_date("time_of_max", 'yyyy-MM-dd hh:mm') %]&lt;br>Q5 [% format_number("q05", 2) %], Q50 [% format_number("q50", 2) %], Q95 [% format_number("q95", 2) %] m³/s</mapTip>
  <layerGeometryType>1</layerGeometryType>
</qgis>
